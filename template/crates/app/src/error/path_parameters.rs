//! The documented names of path parameters. poem-openapi refuses a path parameter under an
//! internal name of its own (its position in the path, read by
//! [`path_parameter_index`](super::poem_openapi_messages::path_parameter_index)); a client must
//! see the name the OpenAPI document gives it (`id`, never `param0`). The templates of the
//! service's document say which: the most specific template matching the request's path.

use super::poem_openapi_messages::path_parameter_index;

/// The documented names of path parameters, by path template.
#[derive(Debug, Clone, Default)]
pub struct PathParameterNames {
    templates: Vec<Vec<TemplateSegment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSegment {
    Literal(String),
    Parameter(String),
}

impl PathParameterNames {
    /// Reads every path template (`/v1/users/{id}`) of an OpenAPI document.
    pub fn from_openapi(document: &serde_json::Value) -> Self {
        let templates = document["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|template| {
                        template
                            .split('/')
                            .filter(|segment| !segment.is_empty())
                            .map(|segment| {
                                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(name) => TemplateSegment::Parameter(name.to_owned()),
                                    None => TemplateSegment::Literal(segment.to_owned()),
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { templates }
    }

    /// The documented name of poem-openapi's `paramN` for a request to `path`.
    pub(super) fn documented_name(&self, path: &str, internal: &str) -> Option<&str> {
        let index = path_parameter_index(internal)?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.templates
            .iter()
            .filter(|template| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| match part {
                            TemplateSegment::Literal(literal) => literal == segment,
                            TemplateSegment::Parameter(_) => true,
                        })
            })
            // The most specific template wins (`/users/me` over `/users/{id}`).
            .max_by_key(|template| {
                template
                    .iter()
                    .filter(|part| matches!(part, TemplateSegment::Literal(_)))
                    .count()
            })?
            .iter()
            .filter_map(|part| match part {
                TemplateSegment::Parameter(name) => Some(name.as_str()),
                TemplateSegment::Literal(_) => None,
            })
            .nth(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_path_parameter_names_map_to_documented_ones() {
        let names = PathParameterNames::from_openapi(&serde_json::json!({
            "paths": {
                "/v1/users/{id}": {},
                "/v1/users/me": {},
                "/v1/orgs/{org}/members/{member}": {}
            }
        }));
        assert_eq!(names.documented_name("/v1/users/abc", "param0"), Some("id"));
        assert_eq!(
            names.documented_name("/v1/orgs/a/members/b", "param1"),
            Some("member")
        );
        assert_eq!(
            names.documented_name("/v1/users/me", "param0"),
            None,
            "no parameter there"
        );
        assert_eq!(names.documented_name("/v1/other/x", "param0"), None);
        assert_eq!(
            names.documented_name("/v1/users/abc", "limit"),
            None,
            "not internal"
        );
    }
}
