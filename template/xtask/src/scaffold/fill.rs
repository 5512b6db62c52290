//! The code templates' placeholders: `__Type__`, `__plural__` and the like, filled from the
//! resource's names, and the blocks each template computes.

use super::resource::Resource;

/// Every spelling of the resource's name a template uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `stock_item`
    pub singular: String,
    /// `stock_items`
    pub plural: String,
    /// `StockItem`
    pub type_name: String,
    /// `StockItems`
    pub plural_type_name: String,
    /// `stock item`, for prose.
    pub singular_words: String,
    /// `stock items`, for prose.
    pub plural_words: String,
}

impl Names {
    pub fn of(resource: &Resource) -> Self {
        Self {
            singular: resource.singular.clone(),
            plural: resource.plural.clone(),
            type_name: resource.type_name(),
            plural_type_name: resource.plural_type_name(),
            singular_words: resource.singular.replace('_', " "),
            plural_words: resource.plural.replace('_', " "),
        }
    }
}

/// `template` with the block placeholders of `blocks` replaced first, then the names.
pub fn fill(template: &str, names: &Names, blocks: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (placeholder, block) in blocks {
        text = text.replace(placeholder, block);
    }
    // Longest first: `__Types__` before `__Type__`, `__plural_words__` before `__plural__`.
    for (placeholder, value) in [
        ("__singular_words__", &names.singular_words),
        ("__plural_words__", &names.plural_words),
        ("__Types__", &names.plural_type_name),
        ("__Type__", &names.type_name),
        ("__singular__", &names.singular),
        ("__plural__", &names.plural),
    ] {
        text = text.replace(placeholder, value);
    }
    text
}

/// `lines`, each indented by `spaces` and ended by a newline.
pub fn indent_lines(lines: &[String], spaces: usize) -> String {
    lines
        .iter()
        .map(|line| format!("{:spaces$}{line}\n", ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_name_is_filled() {
        let resource =
            Resource::parse("stock_item", &["count:int".to_owned()], None, false).expect("ok");
        let filled = fill(
            "__Types__ __Type__ __singular__ __plural__ __singular_words__ __plural_words__ __X__",
            &Names::of(&resource),
            &[("__X__", "block".to_owned())],
        );
        assert_eq!(
            filled,
            "StockItems StockItem stock_item stock_items stock item stock items block"
        );
    }
}
