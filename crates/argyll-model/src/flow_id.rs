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

#[cfg(test)]
mod tests {
    use super::*;

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
