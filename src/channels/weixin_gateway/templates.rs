//! The templates The gateway ships, in both locales (`templates/<locale>/`): the names its
//! config's template fields default to. A user file with the same name replaces one.

use crate::template::Shipped;

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "gateway.text",
        include_str!("../../../templates/zh-CN/gateway.text.hbs"),
    ),
    (
        "en",
        "gateway.text",
        include_str!("../../../templates/en/gateway.text.hbs"),
    ),
];
