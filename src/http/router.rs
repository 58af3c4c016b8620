//! Maps method and path to a handler (path matching by `matchit`).
//!
//! Patterns look like `/api/v1/topics/{topic}/events`. A path that matches a
//! pattern but not the method yields the methods that would match, for a 405
//! with `Allow` (and a CORS preflight's allowed methods). `HEAD` is served by
//! the `GET` handler (hyper omits the body).

use super::{Request, Response};
use crate::error::ApiError;
use http::Method;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// A request handler.
pub type Handler = Box<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

struct RouteEntry {
    pattern: &'static str,
    handlers: Vec<(Method, Handler)>,
}

/// All routes of the server.
#[derive(Default)]
pub struct Router {
    paths: matchit::Router<usize>,
    entries: Vec<RouteEntry>,
}

/// The outcome of looking a request up.
pub enum Lookup<'a> {
    /// A handler for this method and path.
    Found {
        /// The handler.
        handler: &'a Handler,
        /// The matched pattern (the metrics label).
        pattern: &'static str,
        /// Path parameters by name.
        params: Vec<(String, String)>,
    },
    /// The path exists but not for this method.
    MethodNotAllowed {
        /// The matched pattern.
        pattern: &'static str,
        /// The methods the path accepts, comma separated.
        allow: String,
    },
    /// No pattern matches the path.
    NotFound,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` for `method` on `pattern`.
    ///
    /// # Panics
    /// When the pattern is invalid or the same method is registered twice on one
    /// pattern: both are programming errors caught at startup by every test.
    pub fn route<F, Fut>(&mut self, method: Method, pattern: &'static str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
    {
        let index = match self.paths.at(pattern) {
            Ok(found) if self.entries[*found.value].pattern == pattern => *found.value,
            _ => {
                self.paths
                    .insert(pattern, self.entries.len())
                    .unwrap_or_else(|err| panic!("route pattern {pattern}: {err}"));
                self.entries.push(RouteEntry {
                    pattern,
                    handlers: Vec::new(),
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        assert!(
            entry
                .handlers
                .iter()
                .all(|(existing, _)| *existing != method),
            "route {method} {pattern} registered twice"
        );
        entry
            .handlers
            .push((method, Box::new(move |request| Box::pin(handler(request)))));
    }

    /// Adds `handler` for `method` on `pattern`; each call gets its own handle
    /// on the shared `state`.
    pub fn route_with<S, F, Fut>(
        &mut self,
        method: Method,
        pattern: &'static str,
        state: &Arc<S>,
        handler: F,
    ) where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response, ApiError>> + Send + 'static,
    {
        let state = state.clone();
        self.route(method, pattern, move |request| {
            handler(state.clone(), request)
        });
    }

    /// The pattern matching `path` and the methods it accepts (comma
    /// separated, as in `Allow`), for a CORS preflight; `None` for an unknown path.
    pub fn methods(&self, path: &str) -> Option<(&'static str, String)> {
        let entry = &self.entries[*self.paths.at(path).ok()?.value];
        Some((entry.pattern, allowed_methods(entry)))
    }

    /// Finds the handler for a request.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let Ok(matched) = self.paths.at(path) else {
            return Lookup::NotFound;
        };
        let entry = &self.entries[*matched.value];
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        match entry
            .handlers
            .iter()
            .find(|(candidate, _)| candidate == wanted)
        {
            Some((_, handler)) => Lookup::Found {
                handler,
                pattern: entry.pattern,
                params: matched
                    .params
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
            },
            None => Lookup::MethodNotAllowed {
                pattern: entry.pattern,
                allow: allowed_methods(entry),
            },
        }
    }
}

fn allowed_methods(entry: &RouteEntry) -> String {
    let mut names: Vec<&str> = entry
        .handlers
        .iter()
        .map(|(method, _)| method.as_str())
        .collect();
    if names.contains(&"GET") {
        names.push("HEAD");
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response;
    use http::StatusCode;

    fn router() -> Router {
        let mut router = Router::new();
        router.route(Method::GET, "/items/{id}", |_| async {
            Ok(response::data(StatusCode::OK, &"get"))
        });
        router.route(Method::POST, "/items/{id}", |_| async {
            Ok(response::data(StatusCode::OK, &"post"))
        });
        router
    }

    #[test]
    fn finds_handlers_and_params() {
        let router = router();
        match router.lookup(&Method::GET, "/items/42") {
            Lookup::Found {
                pattern, params, ..
            } => {
                assert_eq!(pattern, "/items/{id}");
                assert_eq!(params, vec![("id".to_string(), "42".to_string())]);
            }
            _ => panic!("expected a handler"),
        }
        assert!(matches!(
            router.lookup(&Method::HEAD, "/items/1"),
            Lookup::Found { .. }
        ));
    }

    #[test]
    fn reports_allowed_methods_and_unknown_paths() {
        let router = router();
        match router.lookup(&Method::DELETE, "/items/1") {
            Lookup::MethodNotAllowed { allow, .. } => assert_eq!(allow, "GET, POST, HEAD"),
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            router.lookup(&Method::GET, "/nope"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn lists_a_paths_methods_for_preflights() {
        let router = router();
        assert_eq!(
            router.methods("/items/7"),
            Some(("/items/{id}", "GET, POST, HEAD".to_string()))
        );
        assert_eq!(router.methods("/nope"), None);
    }
}
