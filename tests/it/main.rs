//! Integration tests: the real server on port 0 against mock upstreams.

mod support;

mod alertmanager;
mod browser;
mod budget;
mod chatops;
mod console;
mod console_pages;
mod dedupe;
mod delivery;
mod docs;
mod gateway_window;
mod hardening;
mod identity;
mod incidents;
mod ingest;
mod lifecycle;
mod metrics;
mod oa_fields;
mod official_account;
mod oncall;
mod oncall_e2e;
mod oncall_reach;
mod oncall_voice;
mod ops;
mod props;
mod reach;
mod render;
mod replicas;
mod sentinel;
mod simple_push;
mod store;
mod untrusted;
mod wecom;
mod weixin_gateway;
mod wxpusher;
