//! The templates only the WeCom app uses (its text card), in both locales
//! (`templates/<locale>/`); it shares the rest with the robot ([`super::super::wecom_robot::templates`]).
//! A user file with the same name replaces one.

use crate::template::Shipped;

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "wecom.textcard.title",
        include_str!("../../../templates/zh-CN/wecom.textcard.title.hbs"),
    ),
    (
        "zh-CN",
        "wecom.textcard.description",
        include_str!("../../../templates/zh-CN/wecom.textcard.description.hbs"),
    ),
    (
        "en",
        "wecom.textcard.title",
        include_str!("../../../templates/en/wecom.textcard.title.hbs"),
    ),
    (
        "en",
        "wecom.textcard.description",
        include_str!("../../../templates/en/wecom.textcard.description.hbs"),
    ),
];
