//! Workflow templates: the steps of a task, their dependencies and handlers.

use serde_json::Value;

use crate::handlers::{self, Handler, Work};

/// The templates the orchestrator accepts.
pub const TEMPLATES: &[&str] = &["linear_3", "diamond_4", "tree_7", "linear_10", "linear_50"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec {
    pub name: String,
    pub handler: Handler,
    pub depends_on: Vec<String>,
}

/// Why a task cannot be created from a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown template {0:?}; known templates: linear_3, diamond_4, tree_7, linear_10, linear_50")]
    UnknownTemplate(String),
    #[error("context.handler {0:?} is not a handler; handlers: {names}", names = handlers::NAMES.join(", "))]
    UnknownHandler(String),
    #[error("context.handler must be a string")]
    HandlerNotAString,
}

/// The steps of `template`. Every step runs `context.handler` when given, else the template's own
/// (`linear_*` is a mathematical sequence of `simple_calculation` steps).
pub fn steps(template: &str, context: &Value) -> Result<Vec<StepSpec>, TemplateError> {
    let handler = match context.get("handler") {
        None => Handler::rust(Work::SimpleCalculation),
        Some(Value::String(name)) => {
            Handler::from_name(name).ok_or_else(|| TemplateError::UnknownHandler(name.clone()))?
        }
        Some(_) => return Err(TemplateError::HandlerNotAString),
    };
    let step = |name: &str, depends_on: &[&str]| StepSpec {
        name: name.to_owned(),
        handler,
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
    };
    let linear = |n: usize| {
        (1..=n)
            .map(|i| StepSpec {
                name: format!("step_{i}"),
                handler,
                depends_on: if i == 1 { Vec::new() } else { vec![format!("step_{}", i - 1)] },
            })
            .collect()
    };
    Ok(match template {
        "linear_3" => linear(3),
        "linear_10" => linear(10),
        "linear_50" => linear(50),
        "diamond_4" => vec![
            step("start", &[]),
            step("left", &["start"]),
            step("right", &["start"]),
            step("join", &["left", "right"]),
        ],
        "tree_7" => vec![
            step("root", &[]),
            step("branch_a", &["root"]),
            step("branch_b", &["root"]),
            step("leaf_a1", &["branch_a"]),
            step("leaf_a2", &["branch_a"]),
            step("leaf_b1", &["branch_b"]),
            step("leaf_b2", &["branch_b"]),
        ],
        other => return Err(TemplateError::UnknownTemplate(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_is_a_dag_whose_dependencies_exist_and_come_first() {
        for template in TEMPLATES {
            let steps = steps(template, &json!({})).unwrap();
            for (i, step) in steps.iter().enumerate() {
                for dep in &step.depends_on {
                    let at = steps.iter().position(|s| &s.name == dep).expect("dependency exists");
                    assert!(at < i, "{template}: {} depends on later {dep}", step.name);
                }
            }
            let count: usize = template.rsplit('_').next().unwrap().parse().unwrap();
            assert_eq!(steps.len(), count, "{template}");
        }
    }

    #[test]
    fn the_context_picks_the_handler_and_bad_input_is_named() {
        let steps = steps("diamond_4", &json!({"handler": "noop"})).unwrap();
        assert!(steps.iter().all(|s| s.handler == Handler::rust(Work::Noop)));
        let ruby = super::steps("linear_3", &json!({"handler": "ruby_noop"})).unwrap();
        assert!(ruby.iter().all(|s| s.handler.runtime == handlers::Runtime::Ruby));
        assert_eq!(super::steps("linear_4", &json!({})), Err(TemplateError::UnknownTemplate("linear_4".into())));
        assert_eq!(
            super::steps("linear_3", &json!({"handler": "ruby"})),
            Err(TemplateError::UnknownHandler("ruby".into()))
        );
        assert_eq!(super::steps("linear_3", &json!({"handler": 1})), Err(TemplateError::HandlerNotAString));
    }
}
