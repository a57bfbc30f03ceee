//! Generates a whole 届中分析 campaign like seed 002 (one township, 9 villages and communities,
//! 9 work groups with two devices each, 300+ questionnaires, 460+ evaluation forms, interviews
//! with every member, findings, rectifications, assessments) through a real server, and prints
//! what was written and what the server holds.
//!
//! ```text
//! cargo run --example generate_campaign                        # on a throwaway server
//! cargo run --example generate_campaign -- http://127.0.0.1:8080 <admin token>  # a running server
//! ```
//!
//! For a running server, give the token of an administrator's device (`fieldsync enroll` keeps
//! it in its store; the generator enrolls each of its devices as an administrator with it).

use anyhow::Result;
use fieldsync::{TestServer, generator};

fn main() -> Result<()> {
    let arg = std::env::args().nth(1);
    let own = match &arg {
        Some(url) => {
            let token = std::env::args().nth(2).ok_or_else(|| {
                anyhow::anyhow!("give the admin token after the address: {url} <token>")
            })?;
            fieldsync::register_server(url, &token);
            None
        }
        None => Some(TestServer::start()?),
    };
    let url = arg.unwrap_or_else(|| own.as_ref().map(TestServer::url).unwrap_or_default());
    let dir = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let generated = generator::generate(dir.path(), &url, &generator::Config::default())?;
    println!(
        "generated campaign {} in {:.1} s through {url}",
        generated.campaign,
        started.elapsed().as_secs_f64()
    );
    for (kind, n) in &generated.tally.by_kind {
        println!("  {kind:<16} {n}");
    }
    let t = &generated.tally;
    println!(
        "  interviews (person-times) {}, village members {}, meetings {} ({} participants, {} suggestions)",
        t.interviews, t.village_members, t.meetings, t.meeting_participants, t.suggestions
    );
    println!(
        "  team ratings {:?} (+{} left in conflict), member ratings {:?}",
        t.team_ratings, t.conflicts, t.member_ratings
    );
    if let Some(server) = &own {
        let status = server.wait_merged()?;
        println!("server: {status}");
    }
    Ok(())
}
