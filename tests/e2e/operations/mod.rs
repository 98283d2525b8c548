//! Operating sidelog: the admin endpoint (`admin`), and the dashboard and alerting rules
//! against the metrics it exports (`monitoring`).

mod admin;
mod monitoring;
