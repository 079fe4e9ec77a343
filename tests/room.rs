//! The Room core driven natively: 2, 3 and 4 rooms through the server's real hub and a
//! simulated browser (W3C signaling-state rules), with simulated time. Each scenario runs in
//! milliseconds of real time; the property test runs random interleavings and delays.
#![cfg(not(target_arch = "wasm32"))]

mod room {
    pub mod browser;
    pub mod world;
}

use proptest::prelude::*;
use room::world::{config, traced, World};
use rtcroom::{
    peer::lifecycle::PeerState,
    room::{session::SessionState, Input, RoomEvent},
};
use rtcroom_protocol::LeaveReason;

/// Every pair of joined nodes sees the other connected, with stable signaling, no offer in
/// flight, and the other's cameras announced with their role.
fn assert_converged(w: &World, nodes: &[usize]) {
    for &a in nodes {
        let room = &w.nodes[a].room;
        assert_eq!(room.state(), SessionState::Joined, "node {a}: {:?}", room.state());
        let others: Vec<String> = nodes.iter().filter(|&&b| b != a).map(|&b| w.id(b)).collect();
        let mut seen: Vec<String> = room.peer_ids().map(String::from).collect();
        seen.sort();
        let mut want = others.clone();
        want.sort();
        assert_eq!(seen, want, "node {a} sees the others");
        for &b in nodes.iter().filter(|&&b| b != a) {
            let id = w.id(b);
            assert_eq!(room.peer_state(&id), Some(PeerState::Connected), "node {a} → {b}");
            let pc = room.peer_pc(&id).expect("a pc");
            let sim = &w.nodes[a].pcs[&pc];
            assert_eq!(sim.sig, room::browser::Sig::Stable, "node {a} → {b}: signaling");
            let mut streams: Vec<(String, String)> = room
                .peer_streams(&id)
                .into_iter()
                .map(|(s, r)| (s.to_string(), r.to_string()))
                .collect();
            streams.sort();
            let mut expected: Vec<(String, String)> = w.nodes[b]
                .local
                .iter()
                .map(|s| (s.id.clone(), s.role.clone()))
                .collect();
            expected.sort();
            assert_eq!(streams, expected, "node {a} has {b}'s streams with their roles");
        }
    }
}

fn errors(w: &World, node: usize) -> Vec<String> {
    w.nodes[node]
        .events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::Error(e) => Some(format!("{}: {}", e.code, e.message)),
            _ => None,
        })
        .collect()
}

fn left_events(w: &World, node: usize) -> Vec<(String, LeaveReason)> {
    w.nodes[node]
        .events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::PeerLeft { peer, reason } => Some((peer.clone(), *reason)),
            _ => None,
        })
        .collect()
}

fn joined_events(w: &World, node: usize) -> usize {
    w.nodes[node]
        .events
        .iter()
        .filter(|e| matches!(e, RoomEvent::PeerJoined { .. }))
        .count()
}

fn mesh(w: &mut World, n: usize, room: &str) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let node = w.add(config(room));
            w.add_camera(node, &format!("cam{i}"));
            node
        })
        .collect()
}

#[test]
fn two_rooms_meet_negotiate_and_connect() {
    let mut w = World::new(1);
    let nodes = mesh(&mut w, 2, "r");
    w.join(nodes[0]);
    w.run_for(200.0);
    w.join(nodes[1]);
    w.run_for(5000.0);
    assert_converged(&w, &nodes);
    for &n in &nodes {
        assert_eq!(errors(&w, n), Vec::<String>::new());
        assert!(w.nodes[n].events.contains(&RoomEvent::Joined(Ok(()))));
    }
}

#[test]
fn simultaneous_joins_glare_and_every_mesh_size_converge() {
    for n in 2..=4 {
        for seed in 1..=20 {
            let mut w = World::new(seed * 31 + n as u64);
            let nodes = mesh(&mut w, n, "glare");
            // All at once: every pair's first offers collide.
            for &node in &nodes {
                w.join(node);
            }
            w.run_for(8000.0);
            assert_converged(&w, &nodes);
            for &node in &nodes {
                assert_eq!(errors(&w, node), Vec::<String>::new(), "n={n} seed={seed}");
            }
        }
    }
}

#[test]
fn joins_in_order_and_in_reverse_form_a_full_mesh() {
    for reverse in [false, true] {
        let mut w = World::new(5);
        let nodes = mesh(&mut w, 4, "order");
        let mut order = nodes.clone();
        if reverse {
            order.reverse();
        }
        for node in order {
            w.join(node);
            w.run_for(300.0);
        }
        w.run_for(6000.0);
        assert_converged(&w, &nodes);
    }
}

/// Two joined, connected rooms with a camera each.
fn pair(seed: u64) -> (World, Vec<usize>) {
    let mut w = World::new(seed);
    let nodes = mesh(&mut w, 2, "pair");
    w.join(nodes[0]);
    w.run_for(100.0);
    w.join(nodes[1]);
    w.run_for(5000.0);
    assert_converged(&w, &nodes);
    (w, nodes)
}

fn screen(w: &mut World, node: usize, id: &str) {
    w.input(
        node,
        Input::AddStream(rtcroom::room::LocalStream {
            id: id.into(),
            role: "screen".into(),
            tracks: vec![(format!("{id}-v"), "video".into())],
        }),
    );
}

#[test]
fn glare_mid_call_from_both_sides_resolves() {
    for seed in 1..=30 {
        let (mut w, nodes) = pair(seed);
        // Both sides renegotiate at the same moment.
        screen(&mut w, nodes[0], "s0");
        screen(&mut w, nodes[1], "s1");
        w.run_for(5000.0);
        assert_converged(&w, &nodes);
        assert_eq!(errors(&w, nodes[0]), Vec::<String>::new(), "seed {seed}");
        assert_eq!(errors(&w, nodes[1]), Vec::<String>::new(), "seed {seed}");
    }
}

#[test]
fn streams_added_and_removed_while_a_negotiation_is_in_flight() {
    for seed in 1..=30 {
        let (mut w, nodes) = pair(seed);
        screen(&mut w, nodes[0], "s0");
        w.run_for(3.0); // the offer is on its way
        screen(&mut w, nodes[1], "s1");
        w.run_for(2.0);
        w.input(nodes[0], Input::RemoveStream { stream: "s0".into() });
        w.nodes[nodes[0]].local.retain(|s| s.id != "s0");
        w.run_for(1.0);
        screen(&mut w, nodes[0], "s2");
        w.run_for(5000.0);
        assert_converged(&w, &nodes);
        let removed: Vec<String> = w.nodes[nodes[1]]
            .events
            .iter()
            .filter_map(|e| match e {
                RoomEvent::StreamRemoved { stream, .. } => Some(stream.clone()),
                _ => None,
            })
            .collect();
        // s0 may never have arrived (removed before its offer was applied); if it did, it went.
        assert!(removed.iter().all(|s| s == "s0"), "seed {seed}: {removed:?}");
        let added_s0 = w.nodes[nodes[1]]
            .events
            .iter()
            .any(|e| matches!(e, RoomEvent::StreamAdded { stream, .. } if stream == "s0"));
        assert_eq!(
            added_s0,
            !removed.is_empty(),
            "seed {seed}: s0 added and removed in pairs"
        );
    }
}

fn peer_states(w: &World, node: usize) -> Vec<PeerState> {
    w.nodes[node]
        .events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::PeerState { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cut_media_path_fails_restarts_ice_and_recovers() {
    let (mut w, nodes) = pair(3);
    w.set_media(false);
    w.run_for(8000.0); // disconnected, then failed after 5 s: ICE restarts begin
    assert!(peer_states(&w, nodes[0]).contains(&PeerState::Reconnecting));
    w.set_media(true);
    w.run_for(15_000.0);
    assert_converged(&w, &nodes);
    for &n in &nodes {
        assert!(left_events(&w, n).is_empty(), "no peer-left for a media outage");
        let restarts = w.nodes[n].log.iter().filter(|l| l.starts_with("call")).count();
        assert!(restarts > 0);
    }
}

#[test]
fn a_media_cut_past_the_restart_budget_fails_the_peer_not_the_session() {
    let (mut w, nodes) = pair(4);
    w.set_media(false);
    w.run_for(60_000.0);
    for &n in &nodes {
        let other = w.id(1 - n);
        assert_eq!(w.nodes[n].room.peer_state(&other), Some(PeerState::Failed));
        assert_eq!(w.nodes[n].room.state(), SessionState::Joined);
    }
}

#[test]
fn a_signaling_outage_resumes_with_the_same_ids_and_no_leave() {
    let (mut w, nodes) = pair(5);
    let ids: Vec<String> = nodes.iter().map(|&n| w.id(n)).collect();
    w.set_signaling(false);
    w.run_for(3000.0);
    for &n in &nodes {
        assert_eq!(w.nodes[n].room.state(), SessionState::Reconnecting);
    }
    w.set_signaling(true);
    w.run_for(10_000.0);
    assert_converged(&w, &nodes);
    for &n in &nodes {
        assert_eq!(w.id(n), ids[n]);
        assert!(left_events(&w, n).is_empty());
        assert_eq!(joined_events(&w, n), 1);
    }
    // Renegotiation still works after the resume.
    screen(&mut w, nodes[0], "after");
    w.run_for(3000.0);
    assert_converged(&w, &nodes);
}

#[test]
fn a_server_restart_resumes_with_the_same_ids() {
    let (mut w, nodes) = pair(6);
    let ids: Vec<String> = nodes.iter().map(|&n| w.id(n)).collect();
    w.restart_server();
    w.run_for(15_000.0);
    assert_converged(&w, &nodes);
    for &n in &nodes {
        assert_eq!(w.id(n), ids[n]);
        assert!(left_events(&w, n).is_empty(), "{:?}", left_events(&w, n));
    }
}

#[test]
fn leave_says_bye_and_a_vanished_peer_times_out() {
    let mut w = World::new(8);
    let nodes = mesh(&mut w, 3, "bye");
    for &n in &nodes {
        w.join(n);
        w.run_for(200.0);
    }
    w.run_for(5000.0);
    assert_converged(&w, &nodes);
    let leaver = w.id(nodes[1]);
    let t0 = w.now;
    w.input(nodes[1], Input::Leave { stop_tracks: true });
    w.run_for(200.0);
    assert_eq!(
        left_events(&w, nodes[0]),
        vec![(leaver.clone(), LeaveReason::Left)]
    );
    assert!(w.nodes[nodes[1]].events.contains(&RoomEvent::LeaveDone));
    assert_eq!(w.nodes[nodes[1]].stopped_tracks, vec!["cam1".to_string()]);
    assert!(w.nodes[nodes[1]].room.is_finished());
    let _ = t0;
    // A node that vanishes (its page crashed): the server notices the socket and, after its
    // resume grace, everyone hears `timeout`.
    let gone = w.id(nodes[2]);
    w.crash(nodes[2]);
    w.run_for(20_000.0);
    assert_eq!(
        left_events(&w, nodes[0]),
        vec![(leaver, LeaveReason::Left), (gone, LeaveReason::Timeout)]
    );
    assert_eq!(w.nodes[nodes[0]].room.state(), SessionState::Joined);
}

/// Methods of a dump's events for one pc, in order.
fn pc_methods(d: &rtcroom::stats::dump::Dump, pc: &str) -> Vec<String> {
    d.events
        .iter()
        .filter(|e| e.pc.as_deref() == Some(pc))
        .map(|e| e.method.clone())
        .collect()
}

#[test]
fn the_trace_opens_before_the_first_pc_and_closes_after_the_last() {
    let mut w = World::new(11);
    let nodes: Vec<usize> = (0..2)
        .map(|i| {
            let n = w.add(traced("traced"));
            w.add_camera(n, &format!("cam{i}"));
            n
        })
        .collect();
    for &n in &nodes {
        w.join(n);
        w.run_for(300.0);
    }
    w.run_for(5000.0);
    assert_converged(&w, &nodes);
    for &n in &nodes {
        w.input(n, Input::Leave { stop_tracks: false });
    }
    w.run_for(3000.0);
    for &n in &nodes {
        let log = &w.nodes[n].log;
        let first = |p: &str| log.iter().position(|l| l.starts_with(p));
        let last = |p: &str| log.iter().rposition(|l| l.starts_with(p));
        assert!(first("trace-open") < first("signaling-open"), "{log:?}");
        assert!(first("trace-open") < first("create:"), "{log:?}");
        assert!(last("close:") < last("trace-close"), "{log:?}");
        assert!(w.nodes[n].events.contains(&RoomEvent::LeaveDone));
        assert!(w.nodes[n].room.is_finished());
        let dumps = w.dumps(n);
        assert_eq!(dumps.len(), 1);
        let d = dumps[0].as_ref().expect("a valid dump");
        let methods = pc_methods(d, "PC_0");
        assert_eq!(methods.first().map(String::as_str), Some("create"));
        assert!(methods.iter().any(|m| m == "setLocalDescription"), "{methods:?}");
        assert!(
            methods.iter().any(|m| m == "setRemoteDescriptionOnSuccess"),
            "{methods:?}"
        );
        assert!(methods.iter().any(|m| m == "onicecandidate"), "{methods:?}");
        assert!(methods.iter().any(|m| m == "addIceCandidate"), "{methods:?}");
        assert!(methods.iter().filter(|m| *m == "onconnectionstatechange").count() >= 2);
        assert_eq!(
            &methods[methods.len() - 2..],
            ["getStats", "close"],
            "{methods:?}"
        );
        let final_stats = d
            .events
            .iter()
            .rev()
            .find(|e| e.method == "getStats")
            .expect("a final getStats");
        assert_eq!(final_stats.extra.first().and_then(|v| v.as_str()), Some("close"));
        let text = format!("{:?}", d.events);
        assert!(!text.contains("secret"), "credentials stay out of the dump");
    }
}

#[test]
fn a_peer_leaving_mid_call_takes_its_final_stats_before_its_pc_closes() {
    let mut w = World::new(12);
    let nodes: Vec<usize> = (0..2)
        .map(|i| {
            let n = w.add(traced("mid"));
            w.add_camera(n, &format!("cam{i}"));
            n
        })
        .collect();
    for &n in &nodes {
        w.join(n);
        w.run_for(300.0);
    }
    w.run_for(5000.0);
    w.input(nodes[1], Input::Leave { stop_tracks: false });
    w.run_for(3000.0);
    // Node 0 is still in its call: its trace holds the other pc's end.
    let d = w.dumps(nodes[0]);
    let d = d[0].as_ref().expect("valid");
    let methods = pc_methods(d, "PC_0");
    assert_eq!(
        &methods[methods.len() - 2..],
        ["getStats", "close"],
        "{methods:?}"
    );
    assert_eq!(w.nodes[nodes[0]].room.state(), SessionState::Joined);
}

#[test]
fn a_collector_that_never_answers_delays_the_join_by_its_timeout_only() {
    let mut w = World::new(13);
    let n = w.add(traced("slow"));
    // Nothing acks the trace socket: drop the collector's open.
    w.join(n);
    // The collector opens within 30 ms in this world; what matters is the order and no error.
    w.run_for(5000.0);
    assert_eq!(w.nodes[n].room.state(), SessionState::Joined);
    assert!(w.nodes[n]
        .events
        .iter()
        .any(|e| matches!(e, RoomEvent::TraceStarted { .. })));
}

#[derive(Debug, Clone)]
enum Act {
    Join(usize),
    Screen(usize),
    Unscreen(usize),
    SignalingBlip(u16),
    MediaBlip(u16),
    Restart(usize),
    Wait(u16),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        (0usize..4).prop_map(Act::Join),
        (0usize..4).prop_map(Act::Screen),
        (0usize..4).prop_map(Act::Unscreen),
        (100u16..4000).prop_map(Act::SignalingBlip),
        (100u16..3000).prop_map(Act::MediaBlip),
        (0usize..4).prop_map(Act::Restart),
        (0u16..500).prop_map(Act::Wait),
    ]
}

/// Runs one random scenario and returns the world after it has had time to settle.
fn scenario(seed: u64, n: usize, traced_rooms: bool, acts: Vec<Act>, slow: bool) -> (World, Vec<usize>) {
    let mut w = World::new(seed);
    if slow {
        w.delays.signaling = (5.0, 150.0);
        w.delays.op = (1.0, 40.0);
    }
    let nodes: Vec<usize> = (0..n)
        .map(|i| {
            let mut c = if traced_rooms {
                traced("prop")
            } else {
                config("prop")
            };
            // Joins keep trying through the outages this test makes.
            c.session.initial_attempts = 1000;
            let node = w.add(c);
            w.add_camera(node, &format!("cam{i}"));
            node
        })
        .collect();
    let mut screens = vec![0u32; n];
    let mut down = 0.0;
    for a in acts {
        match a {
            Act::Join(i) => w.join(nodes[i % n]),
            Act::Screen(i) => {
                let i = i % n;
                screens[i] += 1;
                screen(&mut w, nodes[i], &format!("s{i}-{}", screens[i]));
            }
            Act::Unscreen(i) => {
                let i = i % n;
                let last = w.nodes[nodes[i]]
                    .local
                    .iter()
                    .rev()
                    .find(|s| s.role == "screen")
                    .map(|s| s.id.clone());
                if let Some(s) = last {
                    w.input(nodes[i], Input::RemoveStream { stream: s.clone() });
                    w.nodes[nodes[i]].local.retain(|l| l.id != s);
                }
            }
            Act::SignalingBlip(ms) => {
                // Outages that the resume grace (10 s) can cover: at most 6 s down in all, each
                // followed by 2.5 s up (a reconnect attempt comes at least every 2 s).
                let ms = f64::from(ms).min(6000.0 - down);
                if ms > 0.0 {
                    down += ms;
                    w.set_signaling(false);
                    w.run_for(ms);
                    w.set_signaling(true);
                    w.run_for(2500.0);
                }
            }
            Act::MediaBlip(ms) => {
                w.set_media(false);
                w.run_for(f64::from(ms));
                w.set_media(true);
            }
            Act::Restart(i) => {
                let node = nodes[i % n];
                let peer = w.nodes[node].room.peer_ids().next().map(String::from);
                if let Some(peer) = peer {
                    w.input(node, Input::RestartIce { peer });
                }
            }
            Act::Wait(ms) => w.run_for(f64::from(ms)),
        }
    }
    for &node in &nodes {
        w.join(node);
    }
    w.run_for(40_000.0);
    (w, nodes)
}

/// What must hold after any scenario.
fn check(w: &World, nodes: &[usize]) -> Result<(), TestCaseError> {
    assert_converged(w, nodes);
    for &node in nodes {
        let errs: Vec<String> = errors(w, node)
            .into_iter()
            // A candidate of an offer the impolite side ignored, or of an ICE generation
            // that was replaced, may fail to apply: the SDK reports only those it should.
            .filter(|e| !e.starts_with("negotiation-failed: addIceCandidate"))
            .collect();
        prop_assert_eq!(errs, Vec::<String>::new());
        // Nobody that is still here was ever reported gone. (A join whose `joined` is lost
        // with its socket leaves a ghost id on the server until its resume grace ends; the
        // others then hear `timeout` for it, as they should.)
        let here: Vec<String> = nodes.iter().map(|&n| w.id(n)).collect();
        let wrong: Vec<_> = left_events(w, node)
            .into_iter()
            .filter(|(id, _)| here.contains(id))
            .collect();
        if !wrong.is_empty() {
            for e in &w.nodes[node].events {
                if !matches!(e, RoomEvent::Stats { .. }) {
                    eprintln!("  node {node}: {e:?}");
                }
            }
        }
        prop_assert!(wrong.is_empty(), "{:?}", wrong);
        for d in w.dumps(node) {
            prop_assert!(d.is_ok(), "{:?}", d.err());
        }
    }
    Ok(())
}

proptest! {
    // ROOM_CASES=5000 for a longer soak.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("ROOM_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
        ..ProptestConfig::default()
    })]

    /// Random joins, renegotiations, restarts and outages under random delays: every pair ends
    /// stable and connected, no negotiation is stuck, no error is raised, and every trace dump
    /// obeys the reader's rules.
    #[test]
    fn random_interleavings_converge(
        seed in 1u64..u64::MAX,
        n in 2usize..=4,
        traced_rooms in proptest::bool::ANY,
        acts in proptest::collection::vec(act(), 0..25),
        slow in proptest::bool::ANY,
    ) {
        let (w, nodes) = scenario(seed, n, traced_rooms, acts, slow);
        check(&w, &nodes)?;
    }
}

#[test]
fn peer_stats_is_answered_with_or_without_the_stats_option() {
    for traced_room in [false, true] {
        let mut w = World::new(9);
        let make = if traced_room { traced } else { config };
        let nodes = [w.add(make("s")), w.add(make("s"))];
        for &n in &nodes {
            w.add_camera(n, &format!("cam{n}"));
            w.join(n);
        }
        w.run_for(5000.0);
        assert_converged(&w, &nodes);
        let peer = w.id(nodes[1]);
        w.input(nodes[0], Input::PeerStats { peer, request: 7 });
        w.input(
            nodes[0],
            Input::PeerStats {
                peer: "nobody".into(),
                request: 8,
            },
        );
        w.run_for(200.0);
        let reply = |request| {
            w.nodes[nodes[0]].events.iter().find_map(|e| match e {
                RoomEvent::StatsReply { request: r, result } if *r == request => Some(result.clone()),
                _ => None,
            })
        };
        assert!(
            matches!(reply(7), Some(Ok(_))),
            "traced={traced_room}: {:?}",
            reply(7)
        );
        assert!(
            matches!(reply(8), Some(Err(e)) if e.code == "invalid-state"),
            "{:?}",
            reply(8)
        );
    }
}

/// `StatsTrace` on the room core: an app's own pc traced through `Input::Trace*`, with the
/// same tracer as the room's pcs. Generations are kept apart, the pc is sampled once connected,
/// its final sample and `close` come before `PcClosed`, and every dump reads back valid.
#[test]
fn an_apps_own_pc_is_traced_on_the_same_core() {
    use rtcroom::{
        room::{PcId, StatsOptions},
        stats::Value,
    };
    const APP: PcId = 1 << 31;
    let mut w = World::new(3);
    let mut c = config("tracer");
    c.stats = Some(StatsOptions {
        interval_ms: 500.0,
        ..StatsOptions::default()
    });
    let n = w.add(c);
    let connect = |w: &mut World| {
        w.input(
            n,
            Input::TraceConnect {
                client_info: Value::object(),
                url: "ws://collector/rtcstats".into(),
            },
        );
        w.run_for(100.0);
        let opened = w.nodes[n].events.iter().rev().find_map(|e| match e {
            RoomEvent::TraceOpened { generation } => Some(*generation),
            _ => None,
        });
        opened.expect("the generation opened")
    };
    let g = connect(&mut w);
    assert_eq!(w.nodes[n].room.trace_generation(), Some(g));
    assert_eq!(w.nodes[n].room.trace_url(g), Some("ws://collector/rtcstats"));

    w.nodes[n]
        .pcs
        .insert(APP, room::browser::SimPc::new(APP, "app".into()));
    w.input(
        n,
        Input::TraceAttach {
            pc: APP,
            generation: g,
            configuration: Value::object(),
        },
    );
    let record = |w: &mut World, generation: u32, method: &str, value: Value| {
        w.input(
            n,
            Input::TraceRecord {
                generation,
                pc: Some(APP),
                method: method.into(),
                value,
                extra: Vec::new(),
            },
        );
    };
    // A record naming the wrong generation is dropped; the right one counts, and
    // `connected` starts the pc's schedule.
    record(&mut w, g + 7, "createOffer", Value::str("stale"));
    record(&mut w, g, "onconnectionstatechange", Value::str("connected"));
    w.run_for(1200.0);
    let stats: Vec<_> = w.nodes[n]
        .events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::PcStats { pc, trace, .. } => Some((*pc, trace.clone())),
            _ => None,
        })
        .collect();
    assert!(stats.len() >= 3, "first sample + every 500 ms: {stats:?}");
    assert!(stats.iter().all(|s| *s == (APP, Some((g, "PC_0".to_string())))));

    // The pc closes: final sample, `close`, then `PcClosed`.
    w.input(n, Input::TraceClosing { pc: APP });
    w.run_for(200.0);
    assert!(w.nodes[n].events.contains(&RoomEvent::PcClosed { pc: APP }));

    // A second generation ends the first; a stale close of the first is answered at once.
    let g2 = connect(&mut w);
    assert!(g2 > g);
    w.input(n, Input::TraceFinal { generation: g2 });
    w.input(n, Input::TraceClose { generation: g2 });
    w.run_for(8000.0);
    let ended = |w: &World, generation: u32| {
        w.nodes[n]
            .events
            .iter()
            .filter(|e| matches!(e, RoomEvent::TraceEnded { generation: x, .. } if *x == generation))
            .count()
    };
    assert_eq!((ended(&w, g), ended(&w, g2)), (1, 1));
    assert!(w.nodes[n]
        .events
        .contains(&RoomEvent::TraceFinalsDone { generation: g2 }));
    w.input(n, Input::TraceClose { generation: g });
    w.run_for(10.0);
    assert_eq!(ended(&w, g), 2, "a stale close resolves too");
    assert_eq!(w.nodes[n].room.trace_generation(), None);

    let dumps: Vec<_> = w.dumps(n).into_iter().map(|d| d.expect("a valid dump")).collect();
    assert_eq!(dumps.len(), 2);
    let methods: Vec<(&str, Option<&str>, Vec<Value>)> = dumps[0]
        .events
        .iter()
        .filter(|e| e.pc.is_some())
        .map(|e| (e.method.as_str(), e.pc.as_deref(), e.extra.clone()))
        .collect();
    assert_eq!(methods.first().map(|m| m.0), Some("create"));
    assert!(
        !methods.iter().any(|m| m.0 == "createOffer"),
        "the stale record stayed out"
    );
    let n_methods = methods.len();
    assert_eq!(methods[n_methods - 1].0, "close", "{methods:?}");
    assert_eq!(
        (methods[n_methods - 2].0, methods[n_methods - 2].2.clone()),
        ("getStats", vec![Value::str("close")])
    );
    assert!(
        dumps[1].events.iter().all(|e| e.pc.is_none()),
        "nothing of the pc in the second dump"
    );
}

#[test]
fn data_crosses_the_room_and_every_send_settles_with_the_right_outcome() {
    let mut w = World::new(21);
    let nodes = mesh(&mut w, 3, "data");
    for &n in &nodes {
        w.join(n);
        w.run_for(200.0);
    }
    w.run_for(5000.0);
    assert_converged(&w, &nodes);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    // Messages cross every pair, on the reliable channel (chunked at the 64 KiB the simulated
    // browser reports) and on an app channel created mid-call.
    w.send(nodes[0], nodes[1], "reliable", big.clone(), 1);
    w.send(nodes[0], nodes[2], "unreliable", b"to two".to_vec(), 2);
    for &n in &nodes {
        let spec = rtcroom::data::ChannelSpec {
            id: rtcroom::data::app_channel_id("chat"),
            label: "chat".into(),
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
        };
        w.input(n, Input::CreateChannel(spec));
    }
    w.run_for(200.0);
    w.send(nodes[2], nodes[1], "chat", b"hello from two".to_vec(), 3);
    w.send(nodes[1], nodes[0], "nope", b"x".to_vec(), 4);
    w.run_for(1000.0);
    assert_eq!(w.send_result(nodes[0], 1), Some(Ok(true)));
    assert_eq!(w.send_result(nodes[0], 2), Some(Ok(true)));
    assert_eq!(w.send_result(nodes[2], 3), Some(Ok(true)));
    assert_eq!(w.send_result(nodes[1], 4), Some(Err("invalid-argument")));
    let (id0, id2) = (w.id(nodes[0]), w.id(nodes[2]));
    assert_eq!(
        w.nodes[nodes[1]].received,
        vec![
            (id0.clone(), "reliable".into(), 1, big.clone()),
            (id2, "chat".into(), 1, b"hello from two".to_vec()),
        ]
    );
    assert_eq!(
        w.nodes[nodes[2]].received,
        vec![(id0, "unreliable".into(), 1, b"to two".to_vec())]
    );

    // A peer that leaves while a message to it is in flight: `peer-left`; the sender's own
    // leave with a send in flight: `cancelled`; nothing is held after.
    w.send(nodes[0], nodes[2], "reliable", big.clone(), 5);
    w.input(nodes[2], Input::Leave { stop_tracks: false });
    w.run_for(2000.0);
    assert_eq!(w.send_result(nodes[0], 5), Some(Err("peer-left")));
    w.send(nodes[0], nodes[2], "reliable", b"too late".to_vec(), 6);
    assert_eq!(w.send_result(nodes[0], 6), Some(Err("peer-left")));
    w.send(nodes[1], nodes[0], "reliable", big, 7);
    w.input(nodes[1], Input::Leave { stop_tracks: false });
    w.run_for(2000.0);
    assert_eq!(w.send_result(nodes[1], 7), Some(Err("cancelled")));
    for &n in &nodes {
        assert!(
            w.nodes[n].payloads.is_empty(),
            "node {n} holds {} payloads",
            w.nodes[n].payloads.len()
        );
    }
    assert_eq!(errors(&w, nodes[0]), Vec::<String>::new());
}
