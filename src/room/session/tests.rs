use super::*;
use SessionAction as A;
use SessionState::*;

type S = Session<String>;

fn config() -> SessionConfig<String> {
    let mut c = SessionConfig::new("room");
    c.retry = RetryPolicy {
        initial_delay_ms: 100.0,
        max_delay_ms: 1000.0,
        factor: 2.0,
        jitter: 0.0,
        max_attempts: 3,
    };
    c.heartbeat_interval_ms = 1000.0;
    c.heartbeat_timeout_ms = 3000.0;
    c
}

fn peer(id: &str) -> PeerInfo<String> {
    PeerInfo {
        id: id.into(),
        metadata: Some(format!("meta-{id}")),
    }
}

fn joined(id: &str, token: &str, peers: &[&str], resumed: bool) -> ServerMsg<String> {
    ServerMsg::Joined {
        version: 1,
        room: "room".into(),
        peer_id: id.into(),
        resume_token: token.into(),
        peers: peers.iter().map(|p| peer(p)).collect(),
        capacity: 4,
        resumed,
    }
}

fn t(from: SessionState, to: SessionState, reason: &'static str) -> SessionAction<String> {
    A::Transition { from, to, reason }
}

fn join_msg(resume: Option<&str>) -> SessionAction<String> {
    A::Send(ClientMsg::Join {
        room: Some("room".into()),
        version: PROTOCOL_VERSION,
        metadata: None,
        resume: resume.map(String::from),
        capacity: None,
    })
}

/// A session joined as "me" with peers "b" and "c", actions drained.
fn joined_session() -> S {
    let mut s = S::new(config());
    s.join(0.0);
    s.transport_open(10.0);
    s.message(joined("me", "tok1", &["b", "c"], false), 20.0);
    s.drain();
    s
}

#[test]
fn join_handshake() {
    let mut s = S::new(config());
    s.join(0.0);
    assert_eq!(s.drain(), vec![t(Idle, Connecting, "join"), A::OpenTransport]);
    s.transport_open(5.0);
    assert_eq!(s.drain(), vec![join_msg(None)]);
    s.message(joined("me", "tok1", &["b"], false), 6.0);
    assert_eq!(
        s.drain(),
        vec![
            t(Connecting, Joined, "joined"),
            A::JoinResolved,
            A::PeerJoined {
                id: "b".into(),
                metadata: Some("meta-b".into())
            }
        ]
    );
    assert_eq!(s.local_id(), Some("me"));
}

#[test]
fn membership_events() {
    let mut s = joined_session();
    s.message(ServerMsg::PeerJoined { peer: peer("d") }, 30.0);
    s.message(ServerMsg::PeerJoined { peer: peer("d") }, 31.0); // duplicate: ignored
    s.message(
        ServerMsg::MetadataUpdated {
            peer_id: "b".into(),
            metadata: "new".into(),
        },
        32.0,
    );
    s.message(
        ServerMsg::Signal {
            from: "c".into(),
            payload: "sdp".into(),
        },
        33.0,
    );
    s.message(
        ServerMsg::Signal {
            from: "stranger".into(),
            payload: "x".into(),
        },
        34.0,
    );
    s.message(
        ServerMsg::PeerLeft {
            peer_id: "c".into(),
            reason: LeaveReason::Left,
        },
        35.0,
    );
    s.message(
        ServerMsg::PeerLeft {
            peer_id: "c".into(),
            reason: LeaveReason::Left,
        },
        36.0,
    );
    assert_eq!(
        s.drain(),
        vec![
            A::PeerJoined {
                id: "d".into(),
                metadata: Some("meta-d".into())
            },
            A::PeerMetadata {
                id: "b".into(),
                metadata: "new".into()
            },
            A::Signal {
                from: "c".into(),
                payload: "sdp".into()
            },
            A::PeerLeft {
                id: "c".into(),
                reason: LeaveReason::Left
            },
        ]
    );
    assert_eq!(s.peer_ids().collect::<Vec<_>>(), ["b", "d"]);
    assert_eq!(s.peer_metadata("b"), Some(&"new".to_string()));
}

#[test]
fn signaling_drop_reconnects_and_resumes_without_touching_peers() {
    let mut s = joined_session();
    s.transport_closed(1006, "", 100.0);
    assert_eq!(s.drain(), vec![t(Joined, Reconnecting, "signaling-lost")]);
    assert_eq!(s.next_wake(), Some(200.0));
    s.tick(199.0);
    assert!(s.drain().is_empty());
    s.tick(200.0);
    assert_eq!(s.drain(), vec![A::OpenTransport]);
    s.transport_closed(1006, "", 250.0); // refused: next delay doubles
    assert_eq!(s.next_wake(), Some(450.0));
    s.tick(450.0);
    s.transport_open(460.0);
    assert_eq!(s.drain(), vec![A::OpenTransport, join_msg(Some("tok1"))]);
    // The server lists only b: c left while we were away, or has not resumed yet.
    s.message(joined("me", "tok2", &["b"], true), 470.0);
    assert_eq!(
        s.drain(),
        vec![t(Reconnecting, Joined, "resumed")],
        "no peer-left yet"
    );
    assert_eq!(
        s.next_wake(),
        Some(1460.0),
        "ping due before c's grace (15 s) ends"
    );
    s.message(
        ServerMsg::Pong {
            ts: None,
            resume_token: None,
        },
        15_000.0,
    ); // stay alive for the heartbeat
    s.tick(15_469.0);
    assert!(!s.drain().iter().any(|a| matches!(a, A::PeerLeft { .. })));
    s.tick(15_470.0);
    assert!(s.drain().contains(&A::PeerLeft {
        id: "c".into(),
        reason: LeaveReason::Timeout
    }));
    // The attempt budget is back to full: three more failures are tolerated.
    for n in 0..3 {
        s.transport_closed(1006, "", 1000.0 * f64::from(n + 1));
        s.tick(1_000_000.0);
        s.drain();
    }
    assert_eq!(s.state(), Reconnecting);
    s.transport_closed(1006, "", 9_000_000.0);
    assert_eq!(s.state(), Failed);
}

#[test]
fn after_a_server_restart_peers_that_resume_later_are_kept_silently() {
    let mut s = joined_session();
    s.transport_closed(1001, "server shutting down", 0.0);
    s.tick(1000.0);
    s.transport_open(1001.0);
    s.drain();
    // The restarted server knows nobody yet; b and c resume after us.
    s.message(joined("me", "tok2", &[], true), 1002.0);
    s.message(ServerMsg::PeerJoined { peer: peer("b") }, 1500.0);
    s.message(ServerMsg::PeerJoined { peer: peer("c") }, 2500.0);
    s.tick(2600.0);
    assert_eq!(
        s.drain(),
        vec![
            t(Reconnecting, Joined, "resumed"),
            A::Send(ClientMsg::Ping { ts: Some(2600.0) })
        ],
        "nobody left, nobody new"
    );
    assert_eq!(s.next_wake(), Some(3600.0), "no grace timer left: both confirmed");
    assert_eq!(s.peer_ids().collect::<Vec<_>>(), ["b", "c"]);
}

#[test]
fn expired_resume_rejoins_with_a_new_identity() {
    let mut s = joined_session();
    s.transport_closed(1001, "server shutting down", 0.0);
    s.tick(1000.0);
    s.transport_open(1001.0);
    s.drain();
    s.message(
        ServerMsg::Error {
            code: ErrorCode::InvalidResume,
            message: "expired".into(),
            fatal: false,
        },
        1002.0,
    );
    assert_eq!(s.drain(), vec![join_msg(None)]);
    s.message(joined("me2", "tok9", &["b", "c"], false), 1003.0);
    let actions = s.drain();
    assert_eq!(
        actions,
        vec![
            A::PeerLeft {
                id: "b".into(),
                reason: LeaveReason::Timeout
            },
            A::PeerLeft {
                id: "c".into(),
                reason: LeaveReason::Timeout
            },
            t(Reconnecting, Joined, "joined"),
            A::PeerJoined {
                id: "b".into(),
                metadata: Some("meta-b".into())
            },
            A::PeerJoined {
                id: "c".into(),
                metadata: Some("meta-c".into())
            },
        ]
    );
    assert_eq!(s.local_id(), Some("me2"));
}

#[test]
fn reconnect_budget_runs_out_into_failed() {
    let mut s = joined_session();
    let mut now = 0.0;
    s.transport_closed(1006, "", now);
    for _ in 0..3 {
        now += 10_000.0;
        s.tick(now);
        s.transport_closed(1006, "", now);
    }
    let actions = s.drain();
    assert_eq!(s.state(), Failed);
    assert!(actions
        .iter()
        .any(|a| matches!(a, A::Error(e) if e.code == code::SIGNALING_UNREACHABLE && e.fatal)));
    assert_eq!(
        actions.iter().filter(|a| matches!(a, A::PeerLeft { .. })).count(),
        2,
        "peers closed"
    );
    assert_eq!(s.next_wake(), None);
}

#[test]
fn first_connection_failures_reject_join() {
    let mut c = config();
    c.initial_attempts = 2;
    let mut s = S::new(c);
    s.join(0.0);
    s.transport_closed(1006, "", 1.0);
    assert_eq!(s.state(), Connecting);
    s.tick(1000.0);
    s.transport_closed(1006, "", 1001.0);
    let actions = s.drain();
    assert!(
        matches!(actions.iter().rev().nth(1), Some(A::JoinRejected(e)) if e.code == code::SIGNALING_UNREACHABLE)
    );
    assert_eq!(
        actions.last(),
        Some(&t(Connecting, Failed, code::SIGNALING_UNREACHABLE))
    );
}

#[test]
fn refusals_are_typed_and_final() {
    let mut s = S::new(config());
    s.join(0.0);
    s.transport_open(1.0);
    s.message(
        ServerMsg::RoomFull {
            room: "room".into(),
            capacity: 2,
        },
        2.0,
    );
    let actions = s.drain();
    assert!(actions
        .iter()
        .any(|a| matches!(a, A::JoinRejected(e) if e.code == code::ROOM_FULL && e.fatal)));
    assert_eq!(s.state(), Failed);

    let mut s = S::new(config());
    s.join(0.0);
    s.transport_closed(1008, "missing token", 1.0);
    assert!(s.drain().iter().any(
        |a| matches!(a, A::JoinRejected(e) if e.code == code::UNAUTHORIZED && e.message == "missing token")
    ));

    let mut s = joined_session();
    s.message(
        ServerMsg::Error {
            code: ErrorCode::QueueFull,
            message: "no".into(),
            fatal: false,
        },
        50.0,
    );
    assert!(matches!(&s.drain()[..], [A::Error(e)] if !e.fatal && e.code == code::SERVER));
    assert_eq!(s.state(), Joined);
    // A signal to a peer that just left is an expected race, not an error for the app.
    s.message(
        ServerMsg::Error {
            code: ErrorCode::UnknownPeer,
            message: "no peer x in this room".into(),
            fatal: false,
        },
        60.0,
    );
    assert_eq!(s.drain(), vec![]);
}

#[test]
fn heartbeat_pings_then_times_out_silence() {
    let mut s = joined_session();
    assert_eq!(s.next_wake(), Some(1010.0));
    s.tick(1010.0);
    assert_eq!(s.drain(), vec![A::Send(ClientMsg::Ping { ts: Some(1010.0) })]);
    s.message(
        ServerMsg::Pong {
            ts: Some(1010.0),
            resume_token: None,
        },
        1015.0,
    );
    s.tick(2010.0);
    s.tick(3010.0);
    s.drain();
    s.tick(4015.0); // 3000 ms since anything was heard
    assert_eq!(
        s.drain(),
        vec![A::CloseTransport, t(Joined, Reconnecting, "signaling-lost")]
    );
}

#[test]
fn leave_says_bye_and_closes_everything() {
    let mut s = joined_session();
    s.leave();
    assert_eq!(
        s.drain(),
        vec![
            A::SayBye {
                to: vec!["b".into(), "c".into()]
            },
            A::Send(ClientMsg::Leave),
            A::CloseTransport,
            A::PeerLeft {
                id: "b".into(),
                reason: LeaveReason::Left
            },
            A::PeerLeft {
                id: "c".into(),
                reason: LeaveReason::Left
            },
            t(Joined, Left, "leave"),
        ]
    );
    s.transport_closed(1000, "", 0.0);
    s.message(ServerMsg::PeerJoined { peer: peer("z") }, 0.0);
    s.leave();
    assert!(s.drain().is_empty(), "nothing happens after leave");
    assert_eq!(s.next_wake(), None);
}

#[test]
fn leave_while_joining_rejects_join() {
    let mut s = S::new(config());
    s.join(0.0);
    s.drain();
    s.leave();
    let actions = s.drain();
    assert!(actions
        .iter()
        .any(|a| matches!(a, A::JoinRejected(e) if e.code == code::INVALID_STATE)));
    assert_eq!(actions.last(), Some(&t(Connecting, Left, "leave")));
}

#[test]
fn bye_removes_the_peer_before_the_server_says_so() {
    let mut s = joined_session();
    s.peer_bye("b");
    s.message(
        ServerMsg::PeerLeft {
            peer_id: "b".into(),
            reason: LeaveReason::Left,
        },
        40.0,
    );
    assert_eq!(
        s.drain(),
        vec![A::PeerLeft {
            id: "b".into(),
            reason: LeaveReason::Left
        }]
    );
}

#[test]
fn signals_and_metadata_only_go_out_while_connected() {
    let mut s = joined_session();
    assert!(s.signal("b", "x".into()));
    assert!(!s.signal("nobody", "x".into()));
    s.update_metadata("m".into());
    assert_eq!(
        s.drain(),
        vec![
            A::Send(ClientMsg::Signal {
                to: "b".into(),
                payload: "x".into()
            }),
            A::Send(ClientMsg::Metadata { metadata: "m".into() })
        ]
    );
    s.transport_closed(1006, "", 0.0);
    assert!(s.signal("b", "held".into()), "held while out of the room");
    s.tick(10_000.0);
    s.transport_open(10_001.0);
    assert!(
        s.signal("b", "held too".into()),
        "a new socket is not in the room before `joined`"
    );
    let actions = s.drain();
    assert!(actions
        .iter()
        .any(|a| matches!(a, A::Send(ClientMsg::Join { metadata: Some(m), .. }) if m == "m")));
    assert!(!actions
        .iter()
        .any(|a| matches!(a, A::Send(ClientMsg::Signal { .. }))));
}

#[test]
fn signals_made_out_of_the_room_go_out_once_resumed_and_die_with_a_new_identity() {
    let mut s = joined_session();
    s.transport_closed(1006, "", 0.0);
    s.signal("b", "offer".into());
    s.signal("c", "candidate".into());
    s.tick(10_000.0);
    s.transport_open(10_001.0);
    s.drain();
    // The server does not list c (it left while we were away, or is not back yet): its signal
    // waits; c's peer-left drops it.
    s.message(joined("me", "tok2", &["b"], true), 10_002.0);
    s.message(
        ServerMsg::PeerLeft {
            peer_id: "c".into(),
            reason: LeaveReason::Left,
        },
        10_003.0,
    );
    let sent: Vec<_> = s
        .drain()
        .into_iter()
        .filter_map(|a| match a {
            A::Send(ClientMsg::Signal { to, payload }) => Some((to, payload)),
            _ => None,
        })
        .collect();
    assert_eq!(sent, vec![("b".into(), "offer".into())]);
    // Held again, then a new identity: the old peers are gone, and so are their signals.
    s.transport_closed(1006, "", 11_000.0);
    s.signal("b", "stale".into());
    s.tick(20_000.0);
    s.transport_open(20_001.0);
    s.drain();
    s.message(joined("new-me", "tok3", &["b"], false), 20_002.0);
    assert!(!s
        .drain()
        .iter()
        .any(|a| matches!(a, A::Send(ClientMsg::Signal { .. }))));
}

/// The last two actions of a session that just ended: its error (a `join()` rejection while
/// connecting, else a fatal `error` event) and the transition to `failed`.
fn ended_with(s: &mut S) -> (SdkError, SessionAction<String>) {
    let actions = s.drain();
    let error = actions.iter().find_map(|a| match a {
        A::JoinRejected(e) | A::Error(e) => Some(e.clone()),
        _ => None,
    });
    (
        error.expect("an error"),
        actions.last().cloned().expect("a transition"),
    )
}

#[test]
fn a_refusal_close_ends_the_session_as_unauthorized_with_the_reason() {
    use rtcroom_protocol::close;
    // Before the first join: join() rejects.
    let mut s = S::new(config());
    s.join(0.0);
    s.drain();
    s.transport_closed(close::POLICY, "token expired", 1.0);
    let (e, last) = ended_with(&mut s);
    assert_eq!(
        (e.code, e.message.as_str(), e.fatal),
        (code::UNAUTHORIZED, "token expired", true)
    );
    assert_eq!(last, t(Connecting, Failed, code::UNAUTHORIZED));
    assert_eq!(s.next_wake(), None, "no reconnect");
    // While joined: a fatal error event, and the peers are gone.
    let mut s = joined_session();
    s.transport_closed(close::POLICY, "", 40.0);
    let actions = s.drain();
    assert!(actions.iter().any(|a| matches!(a, A::Error(e)
        if e.code == code::UNAUTHORIZED && e.fatal && e.message == "refused by the server")));
    assert_eq!(
        actions.iter().filter(|a| matches!(a, A::PeerLeft { .. })).count(),
        2
    );
    assert_eq!(actions.last(), Some(&t(Joined, Failed, code::UNAUTHORIZED)));
    assert_eq!(s.next_wake(), None);
}

#[test]
fn a_replaced_close_ends_the_session_as_resumed_elsewhere() {
    let mut s = joined_session();
    s.transport_closed(rtcroom_protocol::close::REPLACED, "resumed elsewhere", 40.0);
    let (e, last) = ended_with(&mut s);
    assert_eq!(
        (e.code, e.message.as_str(), e.fatal),
        (code::SIGNALING_CLOSED, "this session resumed elsewhere", true)
    );
    assert_eq!(last, t(Joined, Failed, code::SIGNALING_CLOSED));
    assert_eq!(s.next_wake(), None);
}

#[test]
fn a_kick_close_ends_the_session_as_signaling_closed() {
    let mut s = joined_session();
    s.transport_closed(rtcroom_protocol::close::KICKED, "too many violations", 40.0);
    let (e, last) = ended_with(&mut s);
    assert_eq!(
        (e.code, e.message.as_str(), e.fatal),
        (code::SIGNALING_CLOSED, "too many violations", true)
    );
    assert_eq!(last, t(Joined, Failed, code::SIGNALING_CLOSED));
    assert_eq!(s.next_wake(), None, "no reconnect");
    // Without a reason the message still says what happened.
    let mut s = joined_session();
    s.transport_closed(rtcroom_protocol::close::KICKED, "", 40.0);
    let (e, _) = ended_with(&mut s);
    assert!(e.message.contains("removed"), "{}", e.message);
}

#[test]
fn every_other_close_reconnects_and_resumes_with_the_same_peer_id() {
    use rtcroom_protocol::close;
    for close_code in [
        close::NORMAL,
        close::GOING_AWAY,
        1006,
        close::INVALID_DATA,
        close::TOO_BIG,
        close::TRY_AGAIN_LATER,
        close::TOO_SLOW,
        close::HEARTBEAT_TIMEOUT,
        close::JOIN_TIMEOUT,
        4999,
    ] {
        let mut s = joined_session();
        s.transport_closed(close_code, "some reason", 100.0);
        assert_eq!(
            s.drain(),
            vec![t(Joined, Reconnecting, "signaling-lost")],
            "{close_code}: no peer touched"
        );
        assert_eq!(s.next_wake(), Some(200.0), "{close_code}: backoff");
        s.tick(200.0);
        s.transport_open(210.0);
        assert_eq!(
            s.drain(),
            vec![A::OpenTransport, join_msg(Some("tok1"))],
            "{close_code}"
        );
        s.message(joined("me", "tok2", &["b", "c"], true), 220.0);
        assert_eq!(
            s.drain(),
            vec![t(Reconnecting, Joined, "resumed")],
            "{close_code}"
        );
        assert_eq!(s.local_id(), Some("me"));
        assert_eq!(s.peer_ids().collect::<Vec<_>>(), ["b", "c"]);
    }
    // Before the first join too: another attempt, not the end.
    let mut s = S::new(config());
    s.join(0.0);
    s.drain();
    s.transport_closed(close::TOO_SLOW, "too slow", 1.0);
    assert!(s.drain().is_empty());
    assert_eq!((s.state(), s.next_wake()), (Connecting, Some(101.0)));
}

#[test]
fn a_socket_that_never_opens_is_given_up_after_the_connect_timeout() {
    let mut c = config();
    c.initial_attempts = 2;
    c.connect_timeout_ms = 500.0; // the heartbeat timeout stays 3000
    c.url = "wss://signal.example/signal".into();
    let mut s = S::new(c);
    s.join(0.0);
    s.drain();
    assert_eq!(
        s.next_wake(),
        Some(500.0),
        "the opening deadline, not the heartbeat's"
    );
    s.tick(499.0);
    assert!(s.drain().is_empty());
    s.tick(500.0);
    assert_eq!(
        s.drain(),
        vec![A::CloseTransport],
        "dropped, next attempt scheduled"
    );
    assert_eq!((s.state(), s.next_wake()), (Connecting, Some(600.0)));
    s.tick(600.0);
    assert_eq!(s.drain(), vec![A::OpenTransport]);
    assert_eq!(s.next_wake(), Some(1100.0));
    s.tick(1100.0);
    let (e, last) = ended_with(&mut s);
    assert_eq!((e.code, e.fatal), (code::SIGNALING_UNREACHABLE, true));
    assert_eq!(
        e.message,
        "signaling unreachable at wss://signal.example/signal after 2 attempts \
         (last: not open within 500 ms)"
    );
    assert_eq!(last, t(Connecting, Failed, code::SIGNALING_UNREACHABLE));

    // The last failure in the message is the last one that happened, whatever it was.
    let mut c = config();
    c.initial_attempts = 2;
    c.url = "ws://127.0.0.1:9/signal".into();
    let mut s = S::new(c);
    s.join(0.0);
    s.tick(10_000.0); // connect timeout (default 10 s)
    s.tick(20_000.0);
    s.transport_closed(1006, "", 20_001.0);
    let (e, _) = ended_with(&mut s);
    assert_eq!(
        e.message,
        "signaling unreachable at ws://127.0.0.1:9/signal after 2 attempts (last: close 1006)"
    );

    // Reconnecting uses the same deadline for each new socket; an open one the heartbeat's.
    let mut c = config();
    c.connect_timeout_ms = 500.0;
    let mut s = S::new(c);
    s.join(0.0);
    s.transport_open(10.0);
    s.message(joined("me", "tok1", &[], false), 20.0);
    assert_eq!(
        s.next_wake(),
        Some(1010.0),
        "a ping is due, the 3 s timeout is further"
    );
    s.transport_closed(1006, "", 100.0);
    s.tick(200.0);
    s.drain();
    assert_eq!(s.next_wake(), Some(700.0));
    s.tick(700.0);
    assert_eq!(s.drain(), vec![A::CloseTransport]);
    assert_eq!(s.state(), Reconnecting);
}

#[test]
fn join_while_joining_waits_joined_resolves_over_rejects() {
    let mut s = S::new(config());
    s.join(0.0);
    s.drain();
    s.join(1.0); // the pending join settles this one too
    assert!(s.drain().is_empty(), "nothing rejected, no second socket");
    s.transport_open(5.0);
    s.message(joined("me", "tok1", &[], false), 6.0);
    assert_eq!(
        s.drain(),
        vec![join_msg(None), t(Connecting, Joined, "joined"), A::JoinResolved]
    );
    s.join(7.0);
    assert_eq!(s.drain(), vec![A::JoinResolved], "already joined");
    s.transport_closed(1006, "", 8.0);
    s.drain();
    s.join(9.0);
    assert_eq!(
        s.drain(),
        vec![A::JoinResolved],
        "reconnecting is still in the room"
    );
    s.leave();
    s.drain();
    s.join(10.0);
    assert!(matches!(&s.drain()[..], [A::JoinRejected(e)]
        if e.code == code::INVALID_STATE && !e.fatal && e.message == "join() in state left"));

    let mut s = S::new(config());
    s.join(0.0);
    s.transport_closed(rtcroom_protocol::close::POLICY, "no", 1.0);
    s.drain();
    s.join(2.0);
    assert!(matches!(&s.drain()[..], [A::JoinRejected(e)] if e.code == code::INVALID_STATE));
}

#[test]
fn reconnects_stay_within_reach_of_the_resume_grace() {
    let mut c = config();
    c.retry.initial_delay_ms = 500.0;
    c.retry.max_delay_ms = 30_000.0;
    c.retry.jitter = 0.0;
    c.retry.max_attempts = -1;
    c.resume_window_ms = 10_000.0;
    let mut s = S::new(c);
    s.join(0.0);
    s.transport_open(1.0);
    s.message(joined("me", "tok", &[], false), 2.0);
    s.drain();
    // The outage starts at t=0 (relative): attempts fail one after the other.
    let mut now = 1000.0;
    s.transport_closed(1006, "", now);
    let mut gaps = Vec::new();
    while now < 9000.0 {
        let at = s.next_wake().expect("a reconnect is due");
        gaps.push(at - now);
        now = at;
        s.tick(now);
        s.transport_closed(1006, "", now);
    }
    assert!(
        gaps.iter().all(|g| *g <= 2000.0),
        "at least every 2 s within the grace: {gaps:?}"
    );
    // Past the window the backoff takes over again.
    let mut late = 0.0;
    for _ in 0..6 {
        let at = s.next_wake().expect("a reconnect is due");
        late = at - now;
        now = at;
        s.tick(now);
        s.transport_closed(1006, "", now);
    }
    assert!(late > 2000.0, "{late}");
}
