//! Integration tests: the real server on port 0 against mock upstreams.

mod support;

mod alertmanager;
mod budget;
mod chatops;
mod dedupe;
mod delivery;
mod docs;
mod hardening;
mod identity;
mod ingest;
mod lifecycle;
mod metrics;
mod official_account;
mod ops;
mod props;
mod render;
mod replicas;
mod store;
mod wecom;
mod weixin_gateway;
mod wxpusher;
