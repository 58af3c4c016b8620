//! The settings file of `tidings serve --config FILE` (TOML), and the
//! commented default file that `tidings init --print-config` prints.
//!
//! The file is flat: its keys are the long flags of `tidings serve` without
//! the leading dashes (`listen`, `max-body`, `tickets-sla-unit`, …), read from
//! clap's own definition of [`ServeArgs`], so a flag added there is a key here
//! with no further code. A switch takes a TOML boolean, a repeatable flag an
//! array, every other flag a string or an integer; each value is checked by
//! the flag's own parser.
//!
//! Invariants:
//! * precedence is command line > `TIDINGS_*` environment variable > file >
//!   built-in default. A file value is only ever handed to clap as if it had
//!   been typed (`--key=value`, after the user's own arguments), and only
//!   for a flag when the command line and the environment set neither it nor
//!   a flag conflicting with it (`tls-self-signed` against `tls-cert`), so the
//!   server's settings still come from one clap parse and the one validation
//!   in [`crate::config`];
//! * nothing in the file is ignored: an unknown key, `config` itself, a
//!   hidden flag, a value of the wrong TOML type and a value the flag's
//!   parser refuses are each an error naming the file and the key (exit 2),
//!   even when the command line or the environment overrides that key;
//! * `--print-config` writes every key with its help, flag, environment
//!   variable and default, all commented out, so the printed file changes
//!   nothing until a line is uncommented, and every uncommented default
//!   parses back to that default.

use crate::config::{Cli, ServeArgs};
use crate::error::StartupError;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, CommandFactory, Parser};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The subcommand that reads a settings file.
const SERVE: &str = "serve";
/// The flag (and argument id) naming the settings file; never a key in it.
const CONFIG: &str = "config";
/// Width the comments of the printed file are wrapped to.
const COMMENT_WIDTH: usize = 78;

/// Parses the process's command line. For `serve --config FILE` (or
/// `TIDINGS_CONFIG`), the file's values fill in the flags that neither the
/// command line nor the environment set. Help, version and usage errors of
/// the command line itself exit as clap always does.
pub fn parse_command_line() -> Result<Cli, StartupError> {
    parse_arguments(std::env::args_os().collect())
}

/// [`parse_command_line`] over explicit arguments (`argv[0]` first).
fn parse_arguments(argv: Vec<OsString>) -> Result<Cli, StartupError> {
    // Lenient first pass: only to learn the file and what is set elsewhere
    // (a flag whose partner comes from the file must not fail it).
    let lenient = Cli::command()
        .ignore_errors(true)
        .get_matches_from(argv.iter());
    let Some((path, given)) = settings_file_of(&lenient) else {
        return Ok(Cli::parse_from(argv));
    };
    // `serve` has no positionals and no global flags: the file's arguments
    // can simply follow the user's.
    let mut merged = argv.clone();
    merged.extend(file_arguments(&path, given)?);
    match Cli::try_parse_from(merged) {
        Ok(cli) => Ok(cli),
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // The user's own arguments are wrong: clap says so, as usual.
            if let Err(own) = Cli::try_parse_from(argv) {
                own.exit();
            }
            Err(file_error(
                &path,
                format!("{} (with this file's settings)", clap_message(&err)),
            ))
        }
    }
}

/// The settings file `serve` was given, and the matches telling which flags
/// the command line and the environment set.
fn settings_file_of(matches: &ArgMatches) -> Option<(PathBuf, &ArgMatches)> {
    let (SERVE, serve) = matches.subcommand()? else {
        return None;
    };
    let path = serve.try_get_one::<PathBuf>(CONFIG).ok()??;
    Some((path.clone(), serve))
}

/// The `serve` subcommand as clap defines it (built: switches have their
/// `false` default).
fn serve_command() -> clap::Command {
    let mut serve = ServeArgs::augment_args(clap::Command::new(SERVE));
    serve.build();
    serve
}

/// `serve` without its environment variables: parses one file value alone,
/// so the value meets exactly the flag's parser (and nothing the
/// environment holds).
fn checker() -> clap::Command {
    serve_command().mut_args(|arg| arg.env(None))
}

/// How a flag takes its value, which is how its key is written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A switch (`--tls-self-signed`): a TOML boolean.
    Switch,
    /// One value (`--listen ADDR`): a string or an integer.
    One,
    /// A repeatable flag (`--retention …`): an array of strings or integers.
    List,
}

/// One key of the settings file: a visible long flag of `serve`.
#[derive(Clone, Copy)]
struct Key<'a> {
    /// The flag's definition.
    arg: &'a Arg,
    /// The long flag without dashes: the key.
    name: &'a str,
    /// How it takes its value.
    shape: Shape,
}

impl<'a> Key<'a> {
    /// The key for `arg`, if the file may set it.
    fn of(arg: &'a Arg) -> Option<Key<'a>> {
        let name = arg.get_long()?;
        let shape = match arg.get_action() {
            ArgAction::SetTrue => Shape::Switch,
            ArgAction::Set => Shape::One,
            ArgAction::Append => Shape::List,
            _ => return None,
        };
        (!arg.is_hide_set() && name != CONFIG).then_some(Key { arg, name, shape })
    }

    /// Every key of the file, in the order `serve --help` lists the flags.
    fn all(serve: &'a clap::Command) -> impl Iterator<Item = Key<'a>> {
        serve.get_arguments().filter_map(Key::of)
    }

    /// The command-line arguments that say what `value` says, each checked
    /// by the flag's own parser; `Err` says what is wrong with the value.
    fn arguments(
        &self,
        checker: &clap::Command,
        value: &toml::Value,
    ) -> Result<Vec<String>, String> {
        let flag = format!("--{}", self.name);
        match (self.shape, value) {
            (Shape::Switch, toml::Value::Boolean(on)) => {
                Ok(on.then_some(flag).into_iter().collect())
            }
            (Shape::Switch, other) => Err(format!(
                "expected true or false, found {}",
                other.type_str()
            )),
            (Shape::One, value) => Ok(vec![format!("{flag}={}", self.checked(checker, value)?)]),
            (Shape::List, toml::Value::Array(items)) => items
                .iter()
                .map(|item| Ok(format!("{flag}={}", self.checked(checker, item)?)))
                .collect(),
            (Shape::List, other) => Err(format!(
                "expected an array (this flag may be given several times), found {}",
                other.type_str()
            )),
        }
    }

    /// One value as the flag's text, once `checker` (see [`checker`])
    /// accepted it as the flag's value: the flag's own parser and message.
    fn checked(&self, checker: &clap::Command, value: &toml::Value) -> Result<String, String> {
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            other => {
                return Err(format!(
                    "expected a string or an integer, found {}",
                    other.type_str()
                ));
            }
        };
        let argument = format!("--{}={text}", self.name);
        match checker
            .clone()
            .try_get_matches_from([SERVE, argument.as_str()])
        {
            Ok(_) => Ok(text),
            // The value is fine; its partner flags are another key's business.
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
                ) =>
            {
                Ok(text)
            }
            Err(err) => Err(clap_message(&err)),
        }
    }

    /// Whether the command line or the environment set this flag.
    fn set_elsewhere(&self, given: &ArgMatches) -> bool {
        set_elsewhere(self.arg, given)
    }

    /// Whether the command line or the environment set a flag that conflicts
    /// with this one (either flag declaring the conflict): the file then
    /// yields to it, as it yields to the flag itself.
    fn conflict_set_elsewhere(&self, serve: &clap::Command, given: &ArgMatches) -> bool {
        let id = self.arg.get_id();
        let ours = serve.get_arg_conflicts_with(self.arg);
        serve.get_arguments().any(|other| {
            let conflicts = ours.iter().any(|arg| arg.get_id() == other.get_id())
                || serve
                    .get_arg_conflicts_with(other)
                    .iter()
                    .any(|arg| arg.get_id() == id);
            conflicts && set_elsewhere(other, given)
        })
    }
}

/// Whether the command line or the environment set `arg`.
fn set_elsewhere(arg: &Arg, given: &ArgMatches) -> bool {
    matches!(
        given.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Reads the file and returns the arguments it adds to the command line:
/// every key checked, those set elsewhere (or whose conflicting flags are)
/// left out.
fn file_arguments(path: &Path, given: &ArgMatches) -> Result<Vec<OsString>, StartupError> {
    let table = read_table(path)?;
    let serve = serve_command();
    let checker = checker();
    let mut arguments = Vec::new();
    for (name, value) in &table {
        let key = Key::all(&serve)
            .find(|key| key.name == name)
            .ok_or_else(|| file_error(path, unknown_key(name)))?;
        let added = key
            .arguments(&checker, value)
            .map_err(|problem| file_error(path, format!("key `{name}`: {problem}")))?;
        if !key.set_elsewhere(given) && !key.conflict_set_elsewhere(&serve, given) {
            arguments.extend(added.into_iter().map(OsString::from));
        }
    }
    Ok(arguments)
}

/// The file's top-level table.
fn read_table(path: &Path) -> Result<toml::Table, StartupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| file_error(path, format!("cannot read it: {err}")))?;
    text.parse::<toml::Table>().map_err(|err| {
        file_error(
            path,
            format!("not valid TOML: {}", err.to_string().trim_end()),
        )
    })
}

/// Why `name` is not a key.
fn unknown_key(name: &str) -> String {
    if name == CONFIG {
        return "key `config` cannot be set in a settings file (give --config or TIDINGS_CONFIG)"
            .into();
    }
    format!(
        "unknown key `{name}`: the keys are the long flags of `tidings serve` without the \
         dashes, at the top level (see `tidings init --print-config`)"
    )
}

/// A configuration error about the settings file at `path`.
fn file_error(path: &Path, problem: String) -> StartupError {
    StartupError::Config(format!("settings file {}: {problem}", path.display()))
}

/// A clap error's message on one line: its lines up to the usage, without
/// the `error: ` prefix.
fn clap_message(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let lines: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = lines.join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_string()
}

/// The commented settings file `tidings init --print-config` prints: every
/// key with its help, flag, environment variable and default, commented out.
pub fn default_file() -> String {
    let serve = serve_command();
    let mut file = String::new();
    comment(
        &mut file,
        &format!(
            "Settings of `tidings serve --config FILE` (or TIDINGS_CONFIG=FILE), printed by \
             `tidings init --print-config` of tidings {}.",
            env!("CARGO_PKG_VERSION")
        ),
    );
    comment(&mut file, HEADER);
    for key in Key::all(&serve) {
        file.push('\n');
        describe(&mut file, key);
    }
    file
}

/// What the printed file says about itself.
const HEADER: &str = "\
Keys are the long flags of `tidings serve` without the dashes. A flag on the \
command line wins over its TIDINGS_* environment variable, which wins over \
this file, which wins over the built-in default. Every key below is commented \
out at its default: remove the `#` in front of a key to set it. Switches are \
true or false, repeatable flags arrays, the rest strings (integers may be \
written bare). Sizes: 1MiB, 64KiB, 1048576; durations: 500ms, 10s, 2m, 7d.";

/// Appends one key's comment and its commented default line.
fn describe(file: &mut String, key: Key<'_>) {
    let arg = key.arg;
    let help = arg.get_long_help().or(arg.get_help());
    comment(file, &help.map(ToString::to_string).unwrap_or_default());
    let mut origin = format!("--{}", key.name);
    if let Some(env) = arg.get_env() {
        let _ = write!(origin, ", env {}", env.to_string_lossy());
    }
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|choice| !choice.is_hide_set())
        .map(|choice| choice.get_name().to_string())
        .collect();
    if key.shape == Shape::One && !choices.is_empty() {
        let _ = write!(origin, "; one of: {}", choices.join(", "));
    }
    match default_value(key) {
        Some(value) => {
            comment(file, &origin);
            let _ = writeln!(file, "#{} = {value}", key.name);
        }
        None => comment(file, &format!("{origin}; not set by default")),
    }
}

/// The flag's default as a TOML value, if it has one.
fn default_value(key: Key<'_>) -> Option<String> {
    let defaults: Vec<String> = key
        .arg
        .get_default_values()
        .iter()
        .map(|value| toml_scalar(&value.to_string_lossy()))
        .collect();
    match key.shape {
        Shape::Switch => Some((defaults.first()? == "true").to_string()),
        Shape::One => defaults.into_iter().next(),
        Shape::List => Some(format!("[{}]", defaults.join(", "))),
    }
}

/// A default's text as TOML: a bare integer when it is one, else a string.
fn toml_scalar(text: &str) -> String {
    match text.parse::<i64>() {
        Ok(number) if number.to_string() == text => text.to_string(),
        _ => toml::Value::String(text.to_string()).to_string(),
    }
}

/// Appends `text` as `# ` comment lines wrapped to [`COMMENT_WIDTH`].
fn comment(file: &mut String, text: &str) {
    for paragraph in text.lines() {
        let mut line = String::from("#");
        for word in paragraph.split_whitespace() {
            if line.len() > 1 && line.len() + 1 + word.len() > COMMENT_WIDTH {
                file.push_str(&line);
                file.push('\n');
                line.truncate(1);
            }
            line.push(' ');
            line.push_str(word);
        }
        file.push_str(&line);
        file.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn every_visible_serve_flag_but_config_is_a_key() {
        let serve = serve_command();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let keyed = Key::of(arg).is_some();
            let help = matches!(arg.get_action(), ArgAction::Help | ArgAction::Version);
            let expected = !arg.is_hide_set() && long != CONFIG && !help;
            assert_eq!(
                keyed, expected,
                "--{long}: a new kind of flag needs a Shape"
            );
        }
        assert!(Key::all(&serve).any(|key| key.name == "max-body"));
        assert!(
            Key::all(&serve).any(|key| key.name == "max-origin-bytes"),
            "flattened flags count"
        );
    }

    #[test]
    fn the_printed_file_is_toml_and_its_uncommented_defaults_parse() {
        let printed = default_file();
        assert!(
            printed.parse::<toml::Table>().unwrap().is_empty(),
            "all commented out"
        );
        let uncommented: String = printed
            .lines()
            .map(|line| {
                line.strip_prefix('#')
                    .filter(|rest| !rest.starts_with(' '))
                    .unwrap_or(line)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().unwrap();
        assert_eq!(table["max-body"].as_str(), Some("1MiB"));
        assert_eq!(table["writer-queue"].as_integer(), Some(16_384));
        assert_eq!(table["tls-self-signed"].as_bool(), Some(false));
        assert!(table["retention"].as_array().unwrap().is_empty());
        assert!(!table.contains_key("tls-cert"), "no default, no value line");
        assert!(!table.contains_key(CONFIG));
        let (serve, checker) = (serve_command(), checker());
        let given = checker.clone().get_matches_from(["serve"]);
        for (name, value) in &table {
            let key = Key::all(&serve).find(|key| key.name == name).unwrap();
            assert!(!key.set_elsewhere(&given));
            key.arguments(&checker, value)
                .unwrap_or_else(|err| panic!("default of {name}: {err}"));
        }
    }

    #[test]
    fn values_become_flags_and_wrong_types_are_named() {
        let (serve, checker) = (serve_command(), checker());
        let key = |name: &str| Key::all(&serve).find(|key| key.name == name).unwrap();
        let value = |text: &str| text.parse::<toml::Table>().unwrap().remove("v").unwrap();
        let ok = |name: &str, toml: &str| key(name).arguments(&checker, &value(toml)).unwrap();
        assert_eq!(ok("listen", "v = \"0.0.0.0:1\""), ["--listen=0.0.0.0:1"]);
        assert_eq!(ok("max-body", "v = 2048"), ["--max-body=2048"]);
        assert_eq!(ok("tls-self-signed", "v = true"), ["--tls-self-signed"]);
        assert!(ok("tls-self-signed", "v = false").is_empty());
        assert_eq!(
            ok("retention", "v = [\"a/=5,1h\", \"=10,1d\"]"),
            ["--retention=a/=5,1h", "--retention==10,1d"]
        );
        let err = |name: &str, toml: &str| key(name).arguments(&checker, &value(toml)).unwrap_err();
        assert!(err("tls-self-signed", "v = \"yes\"").contains("expected true or false"));
        assert!(err("retention", "v = \"=5,1h\"").contains("expected an array"));
        assert!(err("listen", "v = 1.5").contains("found float"));
        assert!(err("max-body", "v = \"lots\"").contains("is not a size"));
        assert!(err("log-format", "v = \"xml\"").contains("xml"));
    }

    #[test]
    fn without_a_settings_file_the_command_line_is_parsed_as_always() {
        let cli = parse_arguments(args(&["tidings", "serve", "--max-body", "2KiB"])).unwrap();
        let crate::config::Command::Serve(serve) = cli.command else {
            panic!("serve")
        };
        assert_eq!(serve.max_body, 2048);
    }

    #[test]
    fn comments_wrap_and_keep_paragraphs() {
        let mut file = String::new();
        comment(&mut file, &format!("{}\n\nshort", "word ".repeat(40)));
        let lines: Vec<&str> = file.lines().collect();
        assert!(
            lines
                .iter()
                .all(|line| line.len() <= COMMENT_WIDTH && line.starts_with('#'))
        );
        assert_eq!(lines[lines.len() - 2..], ["#", "# short"]);
    }
}
