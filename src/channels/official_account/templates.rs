//! The templates The Official Account ships, in both locales (`templates/<locale>/`): the names its
//! config's template fields default to. A user file with the same name replaces one.

use crate::template::Shipped;

/// (locale, name, source), for the registry ([`crate::channels::SHIPPED_TEMPLATES`]).
pub const TEMPLATES: &[Shipped] = &[
    (
        "zh-CN",
        "official_account.title",
        include_str!("../../../templates/zh-CN/official_account.title.hbs"),
    ),
    (
        "zh-CN",
        "official_account.time",
        include_str!("../../../templates/zh-CN/official_account.time.hbs"),
    ),
    (
        "zh-CN",
        "official_account.status",
        include_str!("../../../templates/zh-CN/official_account.status.hbs"),
    ),
    (
        "zh-CN",
        "official_account.severity",
        include_str!("../../../templates/zh-CN/official_account.severity.hbs"),
    ),
    (
        "zh-CN",
        "official_account.instance",
        include_str!("../../../templates/zh-CN/official_account.instance.hbs"),
    ),
    (
        "zh-CN",
        "official_account.summary",
        include_str!("../../../templates/zh-CN/official_account.summary.hbs"),
    ),
    (
        "zh-CN",
        "official_account.url",
        include_str!("../../../templates/zh-CN/official_account.url.hbs"),
    ),
    (
        "en",
        "official_account.title",
        include_str!("../../../templates/en/official_account.title.hbs"),
    ),
    (
        "en",
        "official_account.time",
        include_str!("../../../templates/en/official_account.time.hbs"),
    ),
    (
        "en",
        "official_account.status",
        include_str!("../../../templates/en/official_account.status.hbs"),
    ),
    (
        "en",
        "official_account.severity",
        include_str!("../../../templates/en/official_account.severity.hbs"),
    ),
    (
        "en",
        "official_account.instance",
        include_str!("../../../templates/en/official_account.instance.hbs"),
    ),
    (
        "en",
        "official_account.summary",
        include_str!("../../../templates/en/official_account.summary.hbs"),
    ),
    (
        "en",
        "official_account.url",
        include_str!("../../../templates/en/official_account.url.hbs"),
    ),
];
