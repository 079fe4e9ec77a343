//! The harness canary: proves that the browser test setup itself works, in every browser the
//! test command drives. Two `RTCPeerConnection`s in one page, a fake camera + microphone on one,
//! negotiation through an in-page signaling loop, then real events with bounded waits:
//! data channel open and a message intact, `track` for audio and video with a live video track,
//! and `inbound-rtp` video stats whose `framesDecoded` grows. Rust + web-sys only.
#![cfg(target_arch = "wasm32")]

use std::{cell::RefCell, rc::Rc};

use js_sys::{Array, Function, Promise, Reflect};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{
    MediaStream, MediaStreamConstraints, MediaStreamTrack, MediaStreamTrackState, MessageEvent,
    RtcDataChannel, RtcDataChannelEvent, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType,
    RtcSessionDescriptionInit, RtcTrackEvent,
};

wasm_bindgen_test_configure!(run_in_browser);

/// Every wait in this test is bounded by this.
const WAIT_MS: i32 = 15_000;

fn window() -> web_sys::Window {
    web_sys::window().expect("a browser window")
}

async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        window()
            .set_timeout_with_callback_and_timeout_and_arguments_0(resolve.unchecked_ref(), ms)
            .expect("setTimeout");
    });
    JsFuture::from(promise).await.expect("sleep");
}

/// Awaits `promise`, failing with `what` if it does not settle within `WAIT_MS`.
async fn within(promise: Promise, what: &str) -> JsValue {
    let what = what.to_string();
    let timeout = Promise::new(&mut |_, reject| {
        let message = JsValue::from_str(&format!("timed out after {WAIT_MS} ms waiting for {what}"));
        window()
            .set_timeout_with_callback_and_timeout_and_arguments_1(reject.unchecked_ref(), WAIT_MS, &message)
            .expect("setTimeout");
    });
    match JsFuture::from(Promise::race(&Array::of2(&promise, &timeout))).await {
        Ok(value) => value,
        Err(err) => panic!("{}", err.as_string().unwrap_or_else(|| format!("{err:?}"))),
    }
}

/// A promise plus the function that resolves it, for turning one browser event into an await.
fn latch() -> (Promise, Function) {
    let mut resolve_slot = None;
    let promise = Promise::new(&mut |resolve, _| resolve_slot = Some(resolve));
    (
        promise,
        resolve_slot.expect("Promise executor runs synchronously"),
    )
}

/// Fake camera + microphone, from the browser itself: Chromium by its
/// `--use-fake-device-for-media-stream` flag, Firefox by the `media.navigator.streams.fake` pref,
/// both set in `webdriver.json`. No test-only constraints.
async fn fake_camera_and_mic() -> MediaStream {
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&JsValue::TRUE);
    constraints.set_video(&JsValue::TRUE);
    let devices = window().navigator().media_devices().expect("mediaDevices");
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .expect("getUserMedia call");
    within(promise, "getUserMedia").await.unchecked_into()
}

fn on_ice_forward(
    from: &RtcPeerConnection,
    to: &RtcPeerConnection,
) -> Closure<dyn FnMut(RtcPeerConnectionIceEvent)> {
    let to = to.clone();
    let closure =
        Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(move |event: RtcPeerConnectionIceEvent| {
            // The in-page signaling loop: each candidate goes straight to the other side
            // (a null candidate marks end-of-candidates and is forwarded too).
            let init = web_sys::RtcIceCandidateInit::new("");
            let promise = match event.candidate() {
                Some(candidate) => {
                    init.set_candidate(&candidate.candidate());
                    init.set_sdp_mid(candidate.sdp_mid().as_deref());
                    init.set_sdp_m_line_index(candidate.sdp_m_line_index());
                    to.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))
                }
                None => to.add_ice_candidate_with_opt_rtc_ice_candidate_init(None),
            };
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(err) = JsFuture::from(promise).await {
                    web_sys::console::warn_2(&"addIceCandidate failed".into(), &err);
                }
            });
        });
    from.set_onicecandidate(Some(closure.as_ref().unchecked_ref()));
    closure
}

async fn describe(pc: &RtcPeerConnection, kind: RtcSdpType) -> String {
    let created = match kind {
        RtcSdpType::Offer => pc.create_offer(),
        _ => pc.create_answer(),
    };
    let description = within(created, "createOffer/createAnswer").await;
    let sdp = Reflect::get(&description, &"sdp".into())
        .expect("sdp")
        .as_string()
        .expect("sdp string");
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(&sdp);
    within(pc.set_local_description(&init), "setLocalDescription").await;
    sdp
}

async fn apply_remote(pc: &RtcPeerConnection, kind: RtcSdpType, sdp: &str) {
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(sdp);
    within(pc.set_remote_description(&init), "setRemoteDescription").await;
}

/// `framesDecoded` of the first `inbound-rtp` video report, if there is one yet.
async fn frames_decoded(pc: &RtcPeerConnection) -> Option<f64> {
    let report: web_sys::RtcStatsReport = within(pc.get_stats(), "getStats").await.unchecked_into();
    let values = js_sys::try_iter(&report.values()).ok()??;
    for entry in values.flatten() {
        let get = |key: &str| Reflect::get(&entry, &key.into()).ok();
        if get("type")?.as_string().as_deref() == Some("inbound-rtp")
            && get("kind")?.as_string().as_deref() == Some("video")
        {
            return get("framesDecoded").and_then(|v| v.as_f64());
        }
    }
    None
}

#[wasm_bindgen_test]
async fn two_peer_connections_carry_data_audio_and_video() {
    let stream = fake_camera_and_mic().await;
    let kinds: Vec<String> = stream
        .get_tracks()
        .iter()
        .map(|t| t.unchecked_into::<MediaStreamTrack>().kind())
        .collect();
    assert!(
        kinds.contains(&"audio".into()) && kinds.contains(&"video".into()),
        "fake media: {kinds:?}"
    );

    let caller = RtcPeerConnection::new().expect("caller pc");
    let callee = RtcPeerConnection::new().expect("callee pc");
    let _ice_a = on_ice_forward(&caller, &callee);
    let _ice_b = on_ice_forward(&callee, &caller);

    // The callee collects remote tracks; the latch opens once both kinds have arrived.
    let (tracks_done, resolve_tracks) = latch();
    let received: Rc<RefCell<Vec<MediaStreamTrack>>> = Rc::default();
    let on_track = {
        let received = received.clone();
        Closure::<dyn FnMut(RtcTrackEvent)>::new(move |event: RtcTrackEvent| {
            let mut received = received.borrow_mut();
            received.push(event.track());
            let has = |kind: &str| received.iter().any(|t| t.kind() == kind);
            if has("audio") && has("video") {
                let _ = resolve_tracks.call0(&JsValue::NULL);
            }
        })
    };
    callee.set_ontrack(Some(on_track.as_ref().unchecked_ref()));

    let (remote_channel, resolve_channel) = latch();
    let on_datachannel = Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |event: RtcDataChannelEvent| {
        let _ = resolve_channel.call1(&JsValue::NULL, &event.channel());
    });
    callee.set_ondatachannel(Some(on_datachannel.as_ref().unchecked_ref()));

    for track in stream.get_tracks().iter() {
        caller.add_track_0(&track.unchecked_into(), &stream);
    }
    let channel = caller.create_data_channel("canary");
    let (opened, resolve_open) = latch();
    channel.set_onopen(Some(&resolve_open));

    let offer = describe(&caller, RtcSdpType::Offer).await;
    apply_remote(&callee, RtcSdpType::Offer, &offer).await;
    let answer = describe(&callee, RtcSdpType::Answer).await;
    apply_remote(&caller, RtcSdpType::Answer, &answer).await;

    within(opened, "data channel open on the caller").await;
    let remote: RtcDataChannel = within(remote_channel, "datachannel event on the callee")
        .await
        .unchecked_into();
    assert_eq!(remote.label(), "canary");
    let (message, resolve_message) = latch();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let _ = resolve_message.call1(&JsValue::NULL, &event.data());
    });
    remote.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let payload = "canary ✓ — 🐤 1234567890";
    channel.send_with_str(payload).expect("send");
    let got = within(message, "data channel message").await;
    assert_eq!(got.as_string().as_deref(), Some(payload));

    within(tracks_done, "track events for audio and video").await;
    let video = received
        .borrow()
        .iter()
        .find(|t| t.kind() == "video")
        .cloned()
        .expect("video track");
    assert_eq!(video.ready_state(), MediaStreamTrackState::Live);

    // Frames decode, and keep decoding: framesDecoded must grow past a first non-zero sample.
    let mut baseline = None;
    let mut grown = None;
    for _ in 0..(WAIT_MS / 250) {
        if let Some(frames) = frames_decoded(&callee).await {
            match baseline {
                None if frames > 0.0 => baseline = Some(frames),
                Some(base) if frames > base => {
                    grown = Some((base, frames));
                    break;
                }
                _ => {}
            }
        }
        sleep(250).await;
    }
    let (base, later) = grown.unwrap_or_else(|| {
        panic!("framesDecoded did not grow within {WAIT_MS} ms (first sample {baseline:?})")
    });
    assert!(later > base && base > 0.0);

    caller.close();
    callee.close();
    for track in stream.get_tracks().iter() {
        track.unchecked_into::<MediaStreamTrack>().stop();
    }
    drop((on_track, on_datachannel, on_message));
}
