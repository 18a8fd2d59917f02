//! The templates WxPusher ships, in both locales (`templates/<locale>/`): the names its
//! config's template fields default to. A user file with the same name replaces one.

use crate::template::Shipped;

/// The one-line summary of a notification: the default of WxPusher's `summary` and, through
/// the registry ([`crate::channels::SUMMARY_TEMPLATE`]), of other channels' preview lines.
pub const SUMMARY: &str = "wxpusher.summary";
/// The link a message opens, made by [`super::complete_templates`] when neither the shipped
/// set nor the configuration has it; other channels' `url` fields default to it too.
pub const URL: &str = "wxpusher.url";

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "wxpusher.summary",
        include_str!("../../../templates/zh-CN/wxpusher.summary.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.content",
        include_str!("../../../templates/zh-CN/wxpusher.content.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.html",
        include_str!("../../../templates/zh-CN/wxpusher.html.hbs"),
    ),
    (
        "zh-CN",
        "wxpusher.text",
        include_str!("../../../templates/zh-CN/wxpusher.text.hbs"),
    ),
    (
        "en",
        "wxpusher.summary",
        include_str!("../../../templates/en/wxpusher.summary.hbs"),
    ),
    (
        "en",
        "wxpusher.content",
        include_str!("../../../templates/en/wxpusher.content.hbs"),
    ),
    (
        "en",
        "wxpusher.html",
        include_str!("../../../templates/en/wxpusher.html.hbs"),
    ),
    (
        "en",
        "wxpusher.text",
        include_str!("../../../templates/en/wxpusher.text.hbs"),
    ),
];
