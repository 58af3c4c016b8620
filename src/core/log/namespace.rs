//! Topic namespaces: the public one, whose names the generic topics API
//! accepts (`[A-Za-z0-9._:/-]`), and one per module, `~<module>/…`, which
//! the topics API cannot name (`~` is outside its characters).
//!
//! Invariant: a topic belongs to exactly one namespace, read from its name
//! alone, so the module owning an event is known without asking anyone.

use super::INTERNAL_TOPIC_MARK;

/// A namespace of topic names, as a module declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// The names of the generic topics API.
    Public,
    /// `~<name>/…`: one module's own topics.
    Module(&'static str),
}

impl Namespace {
    /// The namespace `topic` belongs to.
    pub fn of(topic: &str) -> NamespaceOf<'_> {
        match topic.strip_prefix(INTERNAL_TOPIC_MARK) {
            Some(rest) => NamespaceOf::Module(rest.split('/').next().unwrap_or_default()),
            None => NamespaceOf::Public,
        }
    }

    /// Checks a declared module namespace: 1 to 32 characters of `[a-z0-9_-]`
    /// (no `/`, which ends it in a topic name).
    pub fn validate(self) -> Result<(), String> {
        let Self::Module(name) = self else {
            return Ok(());
        };
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if name.is_empty() || name.len() > 32 || !valid {
            return Err(format!(
                "module namespace `{name}`: 1 to 32 characters of a-z 0-9 _ -"
            ));
        }
        Ok(())
    }
}

/// The namespace of a topic name (borrowing the module's name from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceOf<'a> {
    /// A public name.
    Public,
    /// `~<name>/…`.
    Module(&'a str),
}

impl NamespaceOf<'_> {
    /// True when this is the namespace `declared`.
    pub fn is(self, declared: Namespace) -> bool {
        match (self, declared) {
            (Self::Public, Namespace::Public) => true,
            (Self::Module(name), Namespace::Module(declared)) => name == declared,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_name_says_its_namespace() {
        let topic = crate::core::log::TopicRef::internal(uuid::Uuid::nil(), "discussion", "42");
        assert_eq!(topic.name, "~discussion/42");
        assert!(Namespace::of(&topic.name).is(Namespace::Module("discussion")));
        assert!(!Namespace::of(&topic.name).is(Namespace::Module("discussions")));
        assert!(!Namespace::of(&topic.name).is(Namespace::Public));
        assert!(Namespace::of("discussion/42").is(Namespace::Public));
    }

    #[test]
    fn declared_module_names_are_checked() {
        assert!(Namespace::Module("chat-rooms_2").validate().is_ok());
        assert!(Namespace::Module("").validate().is_err());
        assert!(Namespace::Module("a/b").validate().is_err());
        assert!(Namespace::Module("Upper").validate().is_err());
        assert!(Namespace::Public.validate().is_ok());
    }
}
