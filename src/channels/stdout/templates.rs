//! The templates The console channel ships, in both locales (`templates/<locale>/`): the names its
//! config's template fields default to. A user file with the same name replaces one.

use crate::template::Shipped;

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "console.text",
        include_str!("../../../templates/zh-CN/console.text.hbs"),
    ),
    (
        "en",
        "console.text",
        include_str!("../../../templates/en/console.text.hbs"),
    ),
];
