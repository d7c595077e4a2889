//! The goals of issue 10, judged on the p50 of this run, printed as a table with the peer's figure beside
//! ours where there is one.

use crate::stats::{Summary, ms};

pub struct Goal {
    pub what: String,
    pub goal: String,
    pub ours: String,
    pub peer: String,
    pub met: bool,
}

impl Goal {
    /// A latency goal with a fixed ceiling.
    pub fn at_most(what: &str, ours: &Summary, ceiling_ms: f64) -> Goal {
        Goal {
            what: what.into(),
            goal: format!("<= {ceiling_ms} ms"),
            ours: spread(ours),
            peer: "-".into(),
            met: ms(ours.p50) <= ceiling_ms,
        }
    }

    /// A latency goal relative to the peer: ours at most `factor` times the peer's.
    pub fn against_peer(what: &str, ours: &Summary, peer: &Summary, factor: f64) -> Goal {
        Goal {
            what: what.into(),
            goal: if factor == 1.0 {
                "<= peer".into()
            } else {
                format!("<= {factor} x peer")
            },
            ours: format!("{} ({:.2} x)", spread(ours), ms(ours.p50) / ms(peer.p50)),
            peer: spread(peer),
            met: ms(ours.p50) <= factor * ms(peer.p50),
        }
    }
}

fn spread(s: &Summary) -> String {
    format!("{:.1} / {:.1} ms", ms(s.p50), ms(s.p95))
}

pub fn print(goals: &[Goal]) {
    println!("\nGoals (judged on p50; figures are p50 / p95):");
    println!(
        "{:<46} {:<14} {:<28} {:<20} result",
        "measure", "goal", "okta-hook", "python-naive peer"
    );
    for g in goals {
        println!(
            "{:<46} {:<14} {:<28} {:<20} {}",
            g.what,
            g.goal,
            g.ours,
            g.peer,
            if g.met { "MET" } else { "MISSED" }
        );
    }
}
