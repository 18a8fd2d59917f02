//! The WeCom templates both WeCom channels use (the robot's and the app's markdown, text
//! and summary), in both locales (`templates/<locale>/`). A user file with the same name
//! replaces one.

use crate::template::Shipped;

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "wecom.summary",
        include_str!("../../../templates/zh-CN/wecom.summary.hbs"),
    ),
    (
        "zh-CN",
        "wecom.markdown",
        include_str!("../../../templates/zh-CN/wecom.markdown.hbs"),
    ),
    (
        "zh-CN",
        "wecom.markdown_v2",
        include_str!("../../../templates/zh-CN/wecom.markdown_v2.hbs"),
    ),
    (
        "zh-CN",
        "wecom.text",
        include_str!("../../../templates/zh-CN/wecom.text.hbs"),
    ),
    (
        "en",
        "wecom.summary",
        include_str!("../../../templates/en/wecom.summary.hbs"),
    ),
    (
        "en",
        "wecom.markdown",
        include_str!("../../../templates/en/wecom.markdown.hbs"),
    ),
    (
        "en",
        "wecom.markdown_v2",
        include_str!("../../../templates/en/wecom.markdown_v2.hbs"),
    ),
    (
        "en",
        "wecom.text",
        include_str!("../../../templates/en/wecom.text.hbs"),
    ),
];
