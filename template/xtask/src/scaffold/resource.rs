//! What `cargo xtask scaffold` is asked for: a resource name, its plural and its fields, each
//! with a type whose constraints go into the request schema and the table.
//!
//! Names are checked before anything is written: a snake_case identifier, no Rust keyword, none
//! of the fields the scaffold adds itself (`id`, `owner_id`, `created_at`, `updated_at`), no
//! field twice.

use anyhow::{Context, Result, bail, ensure};

/// The longest `string` unless `string:MAX` says otherwise.
pub const DEFAULT_STRING_MAX: u32 = 200;
/// The longest `text`.
pub const TEXT_MAX: u32 = 10_000;
/// The range of `int` unless `int:MIN..MAX` says otherwise.
pub const DEFAULT_INT_RANGE: (i32, i32) = (0, 1_000_000);

/// The columns every scaffolded table has; no field may take their names.
const GENERATED_FIELDS: [&str; 4] = ["id", "owner_id", "created_at", "updated_at"];

/// Names a generated identifier must not take (Rust keywords, and words the generated code uses).
const RESERVED_NAMES: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "union",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    // Names the generated modules import or define.
    "api",
    "api_error",
    "audit_event",
    "helpers",
    "json",
    "lib",
    "list",
    "main",
    "outcome",
    "page",
    "path",
    "persistence",
    "principal",
    "query",
    "request",
    "scope",
    "set",
    "table",
    "uuid",
];

/// A field's type, with the constraints it puts in the schema and the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// 1 to `max` characters.
    String {
        max: u32,
    },
    /// 0 to [`TEXT_MAX`] characters.
    Text,
    /// An `i32` from `min` to `max`, both included.
    Int {
        min: i32,
        max: i32,
    },
    Bool,
    /// One of the listed snake_case options, stored as text.
    Enum {
        options: Vec<String>,
    },
}

/// One field of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub kind: FieldType,
}

/// The resource to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// snake_case singular: `widget`.
    pub singular: String,
    /// snake_case plural: `widgets`; the path, table, module and scope prefix.
    pub plural: String,
    pub fields: Vec<Field>,
    /// Writes go to a stricter rate-limit tier of the resource's own.
    pub sensitive: bool,
}

impl Resource {
    /// Parses the command line's name, fields and plural.
    pub fn parse(
        name: &str,
        fields: &[String],
        plural: Option<&str>,
        sensitive: bool,
    ) -> Result<Self> {
        check_identifier(name, "the resource name")?;
        let plural = plural.map_or_else(|| format!("{name}s"), str::to_owned);
        check_identifier(&plural, "the plural")?;
        ensure!(
            plural != name,
            "the plural must differ from the name `{name}`"
        );
        ensure!(!fields.is_empty(), "name at least one field, as NAME:TYPE");
        let mut parsed: Vec<Field> = Vec::new();
        for argument in fields {
            let field = Field::parse(argument)?;
            ensure!(
                parsed.iter().all(|earlier| earlier.name != field.name),
                "the field `{}` is named twice",
                field.name
            );
            parsed.push(field);
        }
        Ok(Self {
            singular: name.to_owned(),
            plural,
            fields: parsed,
            sensitive,
        })
    }

    /// `Widget`.
    pub fn type_name(&self) -> String {
        camel_case(&self.singular)
    }

    /// `Widgets`.
    pub fn plural_type_name(&self) -> String {
        camel_case(&self.plural)
    }
}

impl Field {
    /// Parses `NAME:TYPE`, where TYPE is `string`, `string:MAX`, `text`, `int`, `int:MIN..MAX`,
    /// `bool` or `enum:a,b,c`.
    pub fn parse(argument: &str) -> Result<Self> {
        let (name, kind) = argument
            .split_once(':')
            .with_context(|| format!("`{argument}`: write a field as NAME:TYPE"))?;
        check_identifier(name, "a field name")?;
        ensure!(
            !GENERATED_FIELDS.contains(&name),
            "the field `{name}` is set by the server; the scaffold adds it itself"
        );
        let kind = FieldType::parse(kind).with_context(|| format!("the field `{name}`"))?;
        Ok(Self {
            name: name.to_owned(),
            kind,
        })
    }

    /// `WidgetStatus` for the enum field `status` of `widget`.
    pub fn enum_type_name(&self, resource: &Resource) -> String {
        format!("{}{}", resource.type_name(), camel_case(&self.name))
    }
}

impl FieldType {
    fn parse(text: &str) -> Result<Self> {
        let (kind, argument) = match text.split_once(':') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("string", None) => Ok(Self::String {
                max: DEFAULT_STRING_MAX,
            }),
            ("string", Some(max)) => {
                let max: u32 = max
                    .parse()
                    .with_context(|| format!("`string:{max}`: MAX must be a whole number"))?;
                ensure!(
                    (1..=TEXT_MAX).contains(&max),
                    "`string:{max}`: MAX must be 1 to {TEXT_MAX} (use `text` for longer)"
                );
                Ok(Self::String { max })
            }
            ("text", None) => Ok(Self::Text),
            ("int", None) => Ok(Self::Int {
                min: DEFAULT_INT_RANGE.0,
                max: DEFAULT_INT_RANGE.1,
            }),
            ("int", Some(range)) => {
                let (min, max) = range
                    .split_once("..=")
                    .or_else(|| range.split_once(".."))
                    .with_context(|| format!("`int:{range}`: write the range as MIN..MAX"))?;
                let bound = |value: &str| {
                    value.parse::<i32>().with_context(|| {
                        format!("`int:{range}`: `{value}` is not a 32-bit whole number")
                    })
                };
                let (min, max) = (bound(min)?, bound(max)?);
                ensure!(min <= max, "`int:{range}`: MIN is above MAX");
                Ok(Self::Int { min, max })
            }
            ("bool", None) => Ok(Self::Bool),
            ("enum", Some(options)) => {
                let options: Vec<String> = options.split(',').map(str::to_owned).collect();
                for (index, option) in options.iter().enumerate() {
                    check_identifier(option, "an enum option")?;
                    ensure!(
                        !options[..index].contains(option),
                        "the enum option `{option}` is listed twice"
                    );
                }
                ensure!(
                    options.len() >= 2,
                    "an enum needs at least two options: enum:a,b"
                );
                Ok(Self::Enum { options })
            }
            ("enum", None) => bail!("list the options: enum:a,b,c"),
            ("text" | "bool", Some(_)) => bail!("`{kind}` takes no argument"),
            _ => bail!(
                "unknown type `{text}`: string, string:MAX, text, int, int:MIN..MAX, bool, enum:a,b,c"
            ),
        }
    }
}

/// The column width of an enum stored as text: its longest option, at least 16.
pub fn enum_column_width(options: &[String]) -> usize {
    options.iter().map(String::len).max().unwrap_or(0).max(16)
}

/// Refuses anything but a lowercase snake_case identifier that is not reserved.
fn check_identifier(name: &str, what: &str) -> Result<()> {
    let mut characters = name.chars();
    let starts_with_letter = characters
        .next()
        .is_some_and(|first| first.is_ascii_lowercase());
    ensure!(
        starts_with_letter
            && characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.ends_with('_')
            && !name.contains("__")
            && name.len() <= 40,
        "{what} `{name}` must be snake_case: a lowercase letter, then lowercase letters, digits \
         and single underscores, at most 40 characters"
    );
    // `line_1` would be the column `line_1` to the entity but `line1` to the migration's and
    // the API's case conversions: refused rather than generated inconsistent.
    ensure!(
        !name
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0] == b'_' && pair[1].is_ascii_digit()),
        "{what} `{name}` has a digit right after an underscore (`line_1`): write `line1`"
    );
    ensure!(
        !RESERVED_NAMES.contains(&name),
        "{what} `{name}` is reserved (a Rust keyword or a name the generated code uses)"
    );
    Ok(())
}

/// `widget_part` as `WidgetPart`.
pub fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut characters = word.chars();
            characters
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + characters.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(arguments: &[&str]) -> Vec<String> {
        arguments
            .iter()
            .map(|argument| (*argument).to_owned())
            .collect()
    }

    #[test]
    fn every_field_type_parses_with_its_constraints() {
        let cases = [
            ("a:string", FieldType::String { max: 200 }),
            ("a:string:80", FieldType::String { max: 80 }),
            ("a:text", FieldType::Text),
            (
                "a:int",
                FieldType::Int {
                    min: 0,
                    max: 1_000_000,
                },
            ),
            ("a:int:0..500", FieldType::Int { min: 0, max: 500 }),
            ("a:int:-5..=5", FieldType::Int { min: -5, max: 5 }),
            ("a:bool", FieldType::Bool),
            (
                "a:enum:draft,active",
                FieldType::Enum {
                    options: vec!["draft".to_owned(), "active".to_owned()],
                },
            ),
        ];
        for (argument, expected) in cases {
            assert_eq!(
                Field::parse(argument).expect(argument).kind,
                expected,
                "{argument}"
            );
        }
    }

    #[test]
    fn malformed_field_types_are_refused_with_the_reason() {
        let cases = [
            ("a", "NAME:TYPE"),
            ("a:float", "unknown type"),
            ("a:string:0", "MAX must be 1"),
            ("a:string:x", "whole number"),
            ("a:int:5..1", "MIN is above MAX"),
            ("a:int:0..99999999999", "32-bit"),
            ("a:int:7", "MIN..MAX"),
            ("a:enum", "list the options"),
            ("a:enum:one", "at least two"),
            ("a:enum:a,a", "twice"),
            ("a:enum:A,b", "snake_case"),
            ("a:bool:yes", "no argument"),
        ];
        for (argument, reason) in cases {
            let error = format!("{:#}", Field::parse(argument).expect_err(argument));
            assert!(error.contains(reason), "{argument}: {error}");
        }
    }

    #[test]
    fn names_must_be_free_snake_case_identifiers() {
        for name in [
            "Widget",
            "2d",
            "a-b",
            "a__b",
            "b_",
            "type",
            "self",
            "id",
            "owner_id",
            "line_1",
            "final",
            "request",
            "principal",
        ] {
            assert!(Field::parse(&format!("{name}:bool")).is_err(), "{name}");
        }
        assert!(
            Field::parse("line1:bool").is_ok(),
            "a digit after a letter is fine"
        );
        assert!(
            Field::parse("size:enum:small,size_2").is_err(),
            "enum options follow the same rule"
        );
        for name in ["Widget", "fn", "api"] {
            assert!(
                Resource::parse(name, &fields(&["a:bool"]), None, false).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_resource_has_a_plural_distinct_fields_and_at_least_one() {
        let widget = Resource::parse("widget", &fields(&["name:string"]), None, true).expect("ok");
        assert_eq!(widget.plural, "widgets");
        assert_eq!(widget.type_name(), "Widget");
        assert!(widget.sensitive);
        let mouse =
            Resource::parse("mouse", &fields(&["name:string"]), Some("mice"), false).expect("ok");
        assert_eq!(mouse.plural, "mice");
        assert!(Resource::parse("widget", &fields(&["a:bool", "a:text"]), None, false).is_err());
        assert!(Resource::parse("widget", &[], None, false).is_err());
        assert!(Resource::parse("sheep", &fields(&["a:bool"]), Some("sheep"), false).is_err());
    }

    #[test]
    fn snake_case_becomes_camel_case() {
        assert_eq!(camel_case("stock_item"), "StockItem");
        assert_eq!(camel_case("widget"), "Widget");
    }
}
