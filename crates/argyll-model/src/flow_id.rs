//! Flow ids supplied over the API are sanitised before use (`api.md` §1.3.9).

/// Why a flow id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Valid Flow ID is required")]
pub struct InvalidFlowId;

/// Sanitises a client-supplied flow id: lower-case it, drop every character outside
/// `[a-z0-9_.+\- ]`, turn spaces into `-`, and trim `-` from both ends.
///
/// `"My Flow@1"` becomes `"my-flow1"`; an id with nothing left is rejected.
pub fn sanitize_flow_id(raw: &str) -> Result<String, InvalidFlowId> {
    let cleaned: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.+- ".contains(*c))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        Err(InvalidFlowId)
    } else {
        Ok(trimmed.to_owned())
    }
}

/// The id of the child flow a flow step's work item starts: `parent:step:token` (the
/// original's form; `:` never survives [`sanitize_flow_id`], so a client cannot forge one).
/// When that would be longer than `max_length` characters — deep nesting, long ids — it is
/// `<hash>:<token>` instead, the hash (32 hex digits of SHA-256) standing for `parent:step`:
/// still unique per work item, the same on every call, and bounded.
pub fn child_flow_id(parent: &str, step: &str, token: &str, max_length: usize) -> String {
    let full = format!("{parent}:{step}:{token}");
    if full.chars().count() <= max_length {
        return full;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{parent}:{step}").as_bytes());
    let hash: String = digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{hash}:{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_keep_the_original_form_until_they_grow_too_long() {
        assert_eq!(child_flow_id("p", "s", "t", 256), "p:s:t");
        let long = child_flow_id(&"p".repeat(300), "s", "tok", 256);
        assert_eq!(long.len(), 32 + 1 + 3);
        assert!(long.ends_with(":tok"));
        assert_eq!(long, child_flow_id(&"p".repeat(300), "s", "tok", 256));
        assert_ne!(long, child_flow_id(&"p".repeat(300), "s2", "tok", 256));
        assert_ne!(long, child_flow_id(&"q".repeat(300), "s", "tok", 256));
    }

    #[test]
    fn sanitising_matches_the_original_cases() {
        assert_eq!(sanitize_flow_id("MyFlow-ABC").as_deref(), Ok("myflow-abc"));
        assert_eq!(
            sanitize_flow_id("my flow test").as_deref(),
            Ok("my-flow-test")
        );
        assert_eq!(sanitize_flow_id("flow@#$%123").as_deref(), Ok("flow123"));
        assert_eq!(sanitize_flow_id("My Flow@1").as_deref(), Ok("my-flow1"));
        assert_eq!(sanitize_flow_id("  -a.b_c+d- ").as_deref(), Ok("a.b_c+d"));
        assert_eq!(sanitize_flow_id("ÉTÉ-été 2"), Ok("t-t-2".to_owned()));
        assert_eq!(sanitize_flow_id("@#$%^&*()"), Err(InvalidFlowId));
        assert_eq!(sanitize_flow_id(""), Err(InvalidFlowId));
        assert_eq!(sanitize_flow_id("---"), Err(InvalidFlowId));
        assert_eq!(InvalidFlowId.to_string(), "Valid Flow ID is required");
    }

    #[test]
    fn colons_are_dropped_so_child_ids_cannot_be_forged() {
        assert_eq!(
            sanitize_flow_id("parent:step:tok").as_deref(),
            Ok("parentsteptok")
        );
    }
}
