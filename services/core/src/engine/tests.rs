use super::*;
use crate::health::Finding;
use crate::host::fake::FakeHost;
use crate::recovery::Verdict;
use crate::recovery::tests::{directory_with_backups, kept_aside};
use serde_json::json;
use styxy_proto::api::{AllocateRequest, AllocateResponse, RegisterInstanceRequest};
use styxy_proto::caller::Caller;
use styxy_proto::model::Source;
use styxy_proto::paths;

/// When the tests run, by the fake clock.
const NOW: Millis = 1_750_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    host: FakeHost,
}

/// An engine on a fake machine where this test process runs.
fn fixture_with(config: Config) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let host = FakeHost::at(NOW);
    host.run(std::process::id(), paths::uid());
    let engine = Engine::new(config, store, None, Box::new(host.clone())).unwrap();
    Fixture { _dir: dir, engine, host }
}

fn fixture() -> Fixture {
    fixture_with(Config::builtin())
}

fn me() -> Caller {
    Caller { uid: paths::uid(), pid: Some(std::process::id()), start_time: None }
}

fn other_user() -> Caller {
    Caller { uid: 4242, pid: None, start_time: None }
}

fn req(service_type: &str) -> AllocateRequest {
    AllocateRequest { service_type: Some(service_type.into()), ..Default::default() }
}

fn port_of(f: &mut Fixture, r: AllocateRequest, who: &Caller) -> u16 {
    f.engine.allocate(&r, who).unwrap().port
}

#[test]
fn candidates_go_requested_then_preferred_then_range() {
    let mut f = fixture();
    let me = me();
    let mut r = req("dev");
    r.preferred_port = Some(json!(3050));
    assert_eq!(port_of(&mut f, r, &me), 3050, "requested port first");
    assert_eq!(port_of(&mut f, req("dev"), &me), 3000, "then preferred ports");
    f.host.bind(3001);
    assert_eq!(port_of(&mut f, req("dev"), &me), 3002, "a port bound in the kernel is skipped");
    for p in [3003, 3004] {
        assert_eq!(port_of(&mut f, req("dev"), &me), p);
    }
}

#[test]
fn sticky_port_returns_for_the_same_project_and_name() {
    let mut f = fixture();
    let me = me();
    let mut r = req("api");
    r.service_name = Some("backend".into());
    r.project_path = Some("/home/u/p".into());
    r.preferred_port = Some(json!(8042));
    let first = f.engine.allocate(&r, &me).unwrap();
    f.engine.release(&first.lock_id, &me).unwrap();
    r.preferred_port = None;
    assert_eq!(port_of(&mut f, r.clone(), &me), 8042, "sticky beats the preferred ports");
    r.service_name = Some("other".into());
    assert_eq!(port_of(&mut f, r, &me), 8000);
}

#[test]
fn range_exhaustion_is_a_clear_refusal() {
    let mut f = fixture();
    for p in 6006..=6029 {
        f.host.bind(p);
    }
    let e = f.engine.allocate(&req("storybook"), &me()).unwrap_err();
    assert_eq!(e.code, ErrorCode::RangeExhausted);
    assert!(e.message.contains("6006-6029"), "{}", e.message);
}

#[test]
fn singleton_types_hand_everyone_the_same_port() {
    let mut f = fixture();
    let a = f.engine.allocate(&req("ai"), &me()).unwrap();
    let b = f.engine.allocate(&req("ai"), &me()).unwrap();
    assert_eq!(a.port, 11430);
    assert_eq!((b.port, b.existing, b.success), (11430, true, true));
    assert_eq!(f.engine.state().allocations.len(), 1);
    f.engine.release(&a.lock_id, &me()).unwrap();
    assert!(!f.engine.allocate(&req("ai"), &me()).unwrap().existing, "released singleton is free again");
}

#[test]
fn a_dead_holder_is_reclaimed_when_the_walk_meets_it() {
    let mut f = fixture();
    let child = f.host.spawn(paths::uid());
    let mut r = req("dev");
    r.pid = Some(child);
    let held = f.engine.allocate(&r, &me()).unwrap();
    assert_eq!(port_of(&mut f, req("dev"), &me()), 3001, "held while the owner lives");
    f.host.kill(child);
    let again = port_of(&mut f, req("dev"), &me());
    assert_eq!(again, held.port, "the dead owner's port is handed out again");
    assert!(f.engine.state().by_lock_id(&held.lock_id).is_none());
}

#[test]
fn unknown_types_are_refused_with_the_known_list_unless_auto_allocation_is_on() {
    let mut f = fixture();
    let before = f.engine.store().generation();
    let e = f.engine.allocate(&req("grafana"), &me()).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownServiceType);
    assert!(e.message.contains("dev") && e.message.contains("api"), "{}", e.message);
    assert_eq!(f.engine.store().generation(), before, "a refusal changes nothing");

    let mut config = Config::builtin();
    config.auto_allocation.enabled = true;
    let mut f = fixture_with(config);
    let r = f.engine.allocate(&req("monitoring-grafana"), &me()).unwrap();
    assert!(r.auto_allocated);
    let range = r.allocated_range.unwrap();
    assert!(range[0] >= 10000 && (range[0]..=range[1]).contains(&r.port));
    assert_eq!(f.engine.state().audit.last().unwrap().action, "auto_allocation");
    let again = f.engine.allocate(&req("monitoring-grafana"), &me()).unwrap();
    assert!(!again.auto_allocated, "the second request uses the carved type");

    let e = f.engine.undo_auto_type("monitoring-grafana", &me()).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "undo waits for live allocations");
    f.engine.cleanup(true, &me()).unwrap();
    f.engine.undo_auto_type("monitoring-grafana", &me()).unwrap();
    assert!(!f.engine.config().service_types.contains_key("monitoring-grafana"));
}

#[test]
fn invalid_names_are_refused_before_anything_is_persisted() {
    let mut config = Config::builtin();
    config.auto_allocation.enabled = true;
    let mut f = fixture_with(config);
    let before = f.engine.store().generation();
    let long = "x".repeat(10_000);
    for bad in ["Bad Type!", "a/b", "nul\0", "new\nline", long.as_str()] {
        let e = f.engine.allocate(&req(bad), &me()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField, "{bad:?}");
        let mut r = req("dev");
        r.service_name = Some(bad.to_string());
        assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::InvalidField);
    }
    for port in [json!(0), json!(65536), json!("abc"), json!(-1), json!(3.5), json!([1])] {
        let mut r = req("dev");
        r.preferred_port = Some(port.clone());
        assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::InvalidPort, "{port}");
    }
    assert_eq!(f.engine.store().generation(), before);
    assert!(f.engine.state().auto_types.is_empty());
}

#[test]
fn only_the_owner_or_root_may_release() {
    let mut f = fixture();
    let mut r = req("dev");
    r.lease = Some(LeaseKind::Manual);
    let theirs = f.engine.allocate(&r, &other_user()).unwrap();
    let e = f.engine.release(&theirs.lock_id, &Caller { uid: 4343, pid: None, start_time: None }).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = f.engine.release(&uuid::Uuid::new_v4().to_string(), &me()).unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(f.engine.release("not-a-uuid", &me()).unwrap_err().code, ErrorCode::InvalidField);
    f.engine.release(&theirs.lock_id, &Caller { uid: 0, pid: None, start_time: None }).unwrap();
}

#[test]
fn other_users_see_no_pid_or_project() {
    let mut f = fixture();
    let mut r = req("dev");
    r.project_path = Some("/home/me/secret".into());
    f.engine.allocate(&r, &me()).unwrap();
    let seen = f.engine.list(&other_user()).unwrap();
    assert_eq!(seen[0].allocation.owner.pid, None);
    assert_eq!(seen[0].allocation.project_path, None);
    let mine = f.engine.list(&me()).unwrap();
    assert_eq!(mine[0].allocation.owner.pid, Some(std::process::id()));
}

#[test]
fn session_leases_end_with_their_instance() {
    let mut f = fixture();
    let mut r = req("dev");
    r.lease = Some(LeaseKind::Session);
    r.instance_id = Some("claude-1".into());
    assert_eq!(f.engine.allocate(&r, &me()).unwrap_err().code, ErrorCode::NotFound, "needs a live instance");
    let reg = RegisterInstanceRequest { instance_id: Some("claude-1".into()), ..Default::default() };
    f.engine.register_instance(&reg, &me()).unwrap();
    let a = f.engine.allocate(&r, &me()).unwrap();
    assert_eq!(f.engine.end_instance("claude-1", &me()).unwrap(), vec![a.port]);
    assert!(f.engine.state().allocations.is_empty());

    let short = RegisterInstanceRequest { instance_id: Some("brief".into()), ttl_secs: Some(1), ..Default::default() };
    f.engine.register_instance(&short, &me()).unwrap();
    r.instance_id = Some("brief".into());
    f.engine.allocate(&r, &me()).unwrap();
    f.host.advance(1100);
    assert_eq!(f.engine.reap().unwrap().len(), 1, "an expired session frees its ports");
    assert!(f.engine.state().instances.is_empty());
}

#[test]
fn a_pid_of_another_user_cannot_be_named_as_owner() {
    let mut f = fixture();
    f.host.run(1, 0);
    let mut r = req("dev");
    r.pid = Some(1);
    let caller = Caller { uid: 4242, pid: None, start_time: None };
    assert_eq!(f.engine.allocate(&r, &caller).unwrap_err().code, ErrorCode::Forbidden);
}

#[test]
fn preload_moves_stay_in_the_ports_type_and_name_the_holder() {
    let mut f = fixture();
    let mut held = req("api");
    held.preferred_port = Some(json!(8000));
    held.service_name = Some("backend".into());
    f.engine.allocate(&held, &me()).unwrap();
    f.host.bind(8000);
    let mv = AllocateRequest { preferred_port: Some(json!(8000)), source: Some(Source::Preload), ..Default::default() };
    let r = f.engine.allocate(&mv, &me()).unwrap();
    assert_eq!((r.port, r.requested_port, r.service_type.as_str()), (8001, Some(8000), "api"));
    assert_eq!(r.requested_port_holder.unwrap().service_name.as_deref(), Some("backend"));

    let far =
        AllocateRequest { preferred_port: Some(json!(20000)), source: Some(Source::Preload), ..Default::default() };
    f.host.bind(20000);
    let r = f.engine.allocate(&far, &me()).unwrap();
    assert_eq!((r.port, r.service_type.as_str()), (20001, UNMANAGED_TYPE));
}

#[test]
fn the_per_user_limit_holds() {
    let mut config = Config::builtin();
    config.limits.max_allocations_per_user = 2;
    let mut f = fixture_with(config);
    let who = other_user();
    let mut r = req("dev");
    r.lease = Some(LeaseKind::Manual);
    let first = f.engine.allocate(&r, &who).unwrap();
    f.engine.allocate(&r, &who).unwrap();
    assert_eq!(f.engine.allocate(&r, &who).unwrap_err().code, ErrorCode::QuotaExceeded);
    f.engine.allocate(&r, &me()).unwrap();
    f.engine.release(&first.lock_id, &who).unwrap();
    f.engine.allocate(&r, &who).expect("a release makes room under the limit");
}

#[test]
fn a_range_crowded_with_allocations_of_every_lease_yields_its_first_free_port() {
    let mut config = Config::builtin();
    config.limits.max_allocations_per_user = 100_000;
    let mut f = fixture_with(config);
    let mut manual = req("dev");
    manual.lease = Some(LeaseKind::Manual);
    let held: Vec<AllocateResponse> = (0..70).map(|_| f.engine.allocate(&manual, &me()).unwrap()).collect();
    assert_eq!(held.last().unwrap().port, 3069);
    // A process lease inside the crowd is looked at, and passed while it lives.
    let child = f.host.spawn(paths::uid());
    f.engine.release(&held[40].lock_id, &me()).unwrap();
    let mut process = req("dev");
    process.pid = Some(child);
    let owned = f.engine.allocate(&process, &me()).unwrap();
    assert_eq!(owned.port, 3040, "the released port is the first free one");
    f.engine.release(&held[10].lock_id, &me()).unwrap();
    assert_eq!(port_of(&mut f, manual.clone(), &me()), 3010);
    assert_eq!(port_of(&mut f, manual.clone(), &me()), 3070, "past the live process lease");
    f.host.kill(child);
    f.engine.release(&held[5].lock_id, &me()).unwrap();
    assert_eq!(port_of(&mut f, manual.clone(), &me()), 3005);
    assert_eq!(port_of(&mut f, manual, &me()), 3040, "the dead holder's port is reclaimed");
}

#[test]
fn a_caller_pinned_by_its_connection_owns_its_allocations_without_a_proc_lookup() {
    let mut f = fixture();
    // A pid that names no process: only the pinned identity can vouch for it.
    let gone = Caller { uid: paths::uid(), pid: Some(u32::MAX - 1), start_time: Some(77) };
    let mut r = req("dev");
    r.lease = Some(LeaseKind::Manual);
    let a = f.engine.allocate(&r, &gone).unwrap();
    let owner = &f.engine.state().allocations[&a.port].owner;
    assert_eq!((owner.pid, owner.start_time), (Some(u32::MAX - 1), Some(77)));
    let unpinned = Caller { start_time: None, ..gone };
    assert_eq!(f.engine.allocate(&r, &unpinned).unwrap_err().code, ErrorCode::InvalidField);
}

// Recording health reports: the engine has the last word.

fn with_max_failures(max_failures: u32) -> Fixture {
    let mut config = Config::builtin();
    config.health.max_failures = max_failures;
    fixture_with(config)
}

fn allocate_for(engine: &mut Engine, pid: u32, port: u16) -> (u16, String) {
    let req = AllocateRequest {
        service_type: Some("dev".into()),
        preferred_port: Some(json!(port)),
        pid: Some(pid),
        ..Default::default()
    };
    let me = Caller { uid: paths::uid(), pid: None, start_time: None };
    let r = engine.allocate(&req, &me).unwrap();
    (r.port, r.lock_id)
}

#[test]
fn listening_failures_release_at_the_configured_limit_and_reset_when_healthy() {
    let mut f = with_max_failures(3);
    let (port, lock_id) = allocate_for(&mut f.engine, std::process::id(), 3050);
    let failing = Report {
        findings: vec![Finding { port, lock_id: lock_id.clone(), failure: Some(Failure::NotListening) }],
        expired_instances: vec![],
    };
    assert!(f.engine.apply_health(&failing).unwrap().is_empty());
    assert!(f.engine.apply_health(&failing).unwrap().is_empty());
    assert_eq!(f.engine.state().by_lock_id(&lock_id).unwrap().health_failures, 2, "counted in the state");

    let healthy =
        Report { findings: vec![Finding { failure: None, ..failing.findings[0].clone() }], ..failing.clone() };
    f.engine.apply_health(&healthy).unwrap();
    assert_eq!(f.engine.state().by_lock_id(&lock_id).unwrap().health_failures, 0, "a healthy check resets the count");

    for _ in 0..2 {
        assert!(f.engine.apply_health(&failing).unwrap().is_empty());
    }
    let released = f.engine.apply_health(&failing).unwrap();
    assert_eq!(released, vec![Released { port, lock_id: lock_id.clone(), reason: Failure::NotListening }]);
    assert!(f.engine.state().by_lock_id(&lock_id).is_none());
}

#[test]
fn a_reported_death_is_checked_by_the_engine_before_release() {
    let mut f = with_max_failures(3);
    let child = f.host.spawn(paths::uid());
    let (living_port, living) = allocate_for(&mut f.engine, std::process::id(), 3060);
    let (dying_port, dying) = allocate_for(&mut f.engine, child, 3061);
    let report = Report {
        findings: vec![
            Finding { port: living_port, lock_id: living.clone(), failure: Some(Failure::Exited) },
            Finding { port: dying_port, lock_id: dying.clone(), failure: Some(Failure::Exited) },
        ],
        expired_instances: vec![],
    };
    assert!(f.engine.apply_health(&report).unwrap().is_empty(), "both owners still run: a stale report frees nothing");
    f.host.kill(child);
    let released = f.engine.apply_health(&report).unwrap();
    assert_eq!(released, vec![Released { port: dying_port, lock_id: dying, reason: Failure::Exited }]);
    assert!(f.engine.state().by_lock_id(&living).is_some());
}

#[test]
fn a_file_damaged_under_a_running_writer_is_rewritten_from_memory() {
    let dir = directory_with_backups();
    let (store, _) = Store::open(dir.path()).unwrap();
    let mut engine = Engine::new(Config::builtin(), store, None, Box::new(FakeHost::at(NOW))).unwrap();
    let held = engine.state().clone();
    std::fs::write(dir.path().join("state.json"), b"{ damaged").unwrap();
    assert!(crate::store::read_state(dir.path()).is_err());

    let outcome = engine.recover().unwrap();
    assert_eq!(outcome.verdict(), Verdict::Restored);
    assert_eq!(crate::store::read_state(dir.path()).unwrap(), held, "the writer's state is on disk again");
    let aside = kept_aside(dir.path());
    assert!(aside.iter().any(|n| std::fs::read(dir.path().join(n)).unwrap() == b"{ damaged"), "{aside:?}");
    assert_eq!(engine.recover().unwrap().verdict(), Verdict::Clean, "sound files are left alone");
}

fn handoff(service_type: &str) -> AllocateRequest {
    AllocateRequest { handoff: true, ..req(service_type) }
}

/// The allocation on `port` as `who` lists it, after the lazy reap.
fn listed(f: &mut Fixture, port: u16, who: &Caller) -> Option<Allocation<styxy_proto::timestamp::Timestamp>> {
    f.engine.list(who).unwrap().into_iter().map(|v| v.allocation).find(|a| a.port == port)
}

#[test]
fn a_handoff_without_a_listener_is_held_for_the_grace_then_freed() {
    let mut f = fixture();
    let me = me();
    let r = f.engine.allocate(&handoff("dev"), &me).unwrap();
    assert_eq!(r.handoff_grace_secs, Some(30), "the built-in grace");
    let held = listed(&mut f, r.port, &me).expect("held during the grace");
    assert_eq!((held.owner.uid, held.owner.pid, held.lease), (me.uid, None, LeaseKind::Process));
    assert_eq!(port_of(&mut f, req("dev"), &me), r.port + 1, "nobody else gets it meanwhile");

    f.host.advance(29_999);
    assert!(listed(&mut f, r.port, &me).is_some(), "still held just before the grace ends");
    f.host.advance(1);
    assert!(listed(&mut f, r.port, &me).is_none(), "freed when the grace ends");
    assert_eq!(port_of(&mut f, req("dev"), &me), r.port, "and handed out again");
}

#[test]
fn the_first_listener_of_the_owners_uid_adopts_a_handoff_and_holds_it_until_it_exits() {
    let mut f = fixture();
    let me = me();
    let r = f.engine.allocate(&handoff("dev"), &me).unwrap();
    let stranger = f.host.spawn(me.uid + 1);
    f.host.listen(r.port, stranger);
    assert_eq!(listed(&mut f, r.port, &me).unwrap().owner.pid, None, "another user's listener does not adopt it");

    let server = f.host.spawn(me.uid);
    f.host.listen(r.port, server);
    let adopted = listed(&mut f, r.port, &me).expect("adopted, not freed");
    assert_eq!(adopted.owner.pid, Some(server), "the listener is named as holder");
    assert_eq!(adopted.handoff_until, None);
    assert_eq!(f.engine.take_adopted(), vec![server], "the new owner is handed out to be watched");
    assert!(f.engine.take_adopted().is_empty());

    f.host.advance(60_000);
    assert!(listed(&mut f, r.port, &me).is_some(), "an adopted port outlives the grace");
    f.host.kill(server);
    let freed = f.engine.reap_pid(server).unwrap();
    assert_eq!(freed.iter().map(|a| a.port).collect::<Vec<_>>(), vec![r.port], "freed when its holder exits");
}

#[test]
fn a_health_pass_finds_an_unclaimed_handoff_and_a_listener_to_adopt() {
    let mut f = fixture();
    let me = me();
    let claimed = f.engine.allocate(&handoff("dev"), &me).unwrap().port;
    let unclaimed = f.engine.allocate(&handoff("dev"), &me).unwrap().port;
    let server = f.host.spawn(me.uid);
    f.host.listen(claimed, server);
    f.host.advance(30_000);
    let listening = health::Listening::new([(claimed, me.uid)]);
    let report = health::check(f.engine.state(), f.host.now(), &f.host, Some(&listening));
    let verdicts: Vec<(u16, Option<Failure>)> = report.findings.iter().map(|x| (x.port, x.failure)).collect();
    assert!(verdicts.contains(&(unclaimed, Some(Failure::Unclaimed))), "{verdicts:?}");
    assert!(verdicts.iter().any(|(port, _)| *port == claimed), "the claimed one is reported to be adopted");

    let released = f.engine.apply_health(&report).unwrap();
    assert_eq!(released.iter().map(|x| (x.port, x.reason)).collect::<Vec<_>>(), vec![(unclaimed, Failure::Unclaimed)]);
    assert_eq!(f.engine.state().allocations[&claimed].owner.pid, Some(server));
}

#[test]
fn a_handoff_naming_a_pid_or_another_lease_is_refused_and_changes_nothing() {
    let mut f = fixture();
    let me = me();
    let generation = f.engine.state().generation;
    let with_pid = AllocateRequest { pid: Some(std::process::id()), ..handoff("dev") };
    let manual = AllocateRequest { lease: Some(LeaseKind::Manual), ..handoff("dev") };
    for bad in [with_pid, manual] {
        let e = f.engine.allocate(&bad, &me).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField, "{e}");
    }
    assert_eq!(f.engine.state().generation, generation);
}

#[test]
fn a_handoff_its_uid_listens_on_is_held_past_the_grace_and_adopted_by_the_pid_a_privileged_observer_names() {
    let mut f = fixture();
    let me = me();
    f.host.hide_listener_pids();
    let r = f.engine.allocate(&handoff("dev"), &me).unwrap();
    let server = f.host.spawn(me.uid);
    f.host.listen(r.port, server);
    f.host.advance(60_000);
    let held = listed(&mut f, r.port, &me).expect("held while its uid listens, though the listener's pid is unseen");
    assert_eq!(held.owner.pid, None, "nobody this host cannot see is named");

    let stranger = f.host.spawn(me.uid + 1);
    assert!(!f.engine.adopt(r.port, stranger).unwrap(), "another user's process does not adopt it");
    assert!(!f.engine.adopt(r.port + 1, server).unwrap(), "nor is anything adopted where no hand-off waits");
    assert_eq!(listed(&mut f, r.port, &me).unwrap().owner.pid, None);

    assert!(f.engine.adopt(r.port, server).unwrap());
    assert_eq!(listed(&mut f, r.port, &me).unwrap().owner.pid, Some(server), "the listener is named as holder");
    assert_eq!(f.engine.take_adopted(), vec![server], "and handed out to be watched");
    f.host.kill(server);
    let freed = f.engine.reap_pid(server).unwrap();
    assert_eq!(freed.iter().map(|a| a.port).collect::<Vec<_>>(), vec![r.port], "freed when its holder exits");
}

#[test]
fn a_health_pass_keeps_a_handoff_past_the_grace_while_its_uid_listens_and_frees_it_after() {
    let mut f = fixture();
    let me = me();
    f.host.hide_listener_pids();
    let port = f.engine.allocate(&handoff("dev"), &me).unwrap().port;
    let server = f.host.spawn(me.uid);
    f.host.listen(port, server);
    f.host.advance(60_000);
    let listening = health::Listening::new([(port, me.uid)]);
    let report = health::check(f.engine.state(), f.host.now(), &f.host, Some(&listening));
    let verdicts: Vec<(u16, Option<Failure>)> = report.findings.iter().map(|x| (x.port, x.failure)).collect();
    assert_eq!(verdicts, vec![(port, None)], "reported to be adopted, not as unclaimed");
    assert!(f.engine.apply_health(&report).unwrap().is_empty());
    assert!(f.engine.state().allocations.contains_key(&port));

    f.host.kill(server);
    let report = health::check(f.engine.state(), f.host.now(), &f.host, Some(&health::Listening::default()));
    let released = f.engine.apply_health(&report).unwrap();
    assert_eq!(released.iter().map(|x| (x.port, x.reason)).collect::<Vec<_>>(), vec![(port, Failure::Unclaimed)]);
}

#[test]
fn a_run_reservation_follows_the_port_its_program_listens_on() {
    let mut f = fixture();
    let python = f.host.spawn(paths::uid());
    let run = AllocateRequest { pid: Some(python), source: Some(Source::Run), ..req("dev") };
    let reserved = f.engine.allocate(&run, &me()).unwrap();
    assert_eq!(reserved.port, 3000);
    // python ignores PORT and listens on 8000; its preload reports it.
    f.host.listen(8000, python);
    let listener = Caller { uid: paths::uid(), pid: Some(python), start_time: None };
    let report = AllocateRequest {
        preferred_port: Some(json!(8000)),
        source: Some(Source::Preload),
        listening: true,
        replaces: Some(reserved.lock_id.clone()),
        scope: Some("/src/shop".into()),
        ..Default::default()
    };
    let recorded = f.engine.allocate(&report, &listener).unwrap();
    assert_eq!(recorded.port, 8000);
    let held: Vec<(u16, Option<u32>, &str)> =
        f.engine.state().allocations.values().map(|a| (a.port, a.owner.pid, a.service_type.as_str())).collect();
    assert_eq!(held, [(8000, Some(python), "dev")], "exactly one allocation, on the port python listens on");
    assert_eq!(f.engine.state().allocations[&8000].scope.as_deref(), Some("/src/shop"));
}

#[test]
fn a_run_reservation_its_owner_listens_on_stays() {
    let mut f = fixture();
    let server = f.host.spawn(paths::uid());
    let run = AllocateRequest { pid: Some(server), source: Some(Source::Run), ..req("dev") };
    let reserved = f.engine.allocate(&run, &me()).unwrap();
    f.host.listen(reserved.port, server);
    f.host.listen(9229, server);
    let listener = Caller { uid: paths::uid(), pid: Some(server), start_time: None };
    let report = AllocateRequest {
        preferred_port: Some(json!(9229)),
        listening: true,
        replaces: Some(reserved.lock_id.clone()),
        ..Default::default()
    };
    f.engine.allocate(&report, &listener).unwrap();
    let ports: Vec<u16> = f.engine.state().allocations.keys().copied().collect();
    assert_eq!(ports, [reserved.port, 9229], "both ports the program listens on are its allocations");
}

#[test]
fn a_listener_report_never_takes_another_users_port() {
    let mut f = fixture();
    let theirs = AllocateRequest { lease: Some(LeaseKind::Manual), preferred_port: Some(json!(8000)), ..req("api") };
    f.engine.allocate(&theirs, &other_user()).unwrap();
    let listener = f.host.spawn(paths::uid());
    f.host.listen(8000, listener);
    let report = AllocateRequest { preferred_port: Some(json!(8000)), listening: true, ..Default::default() };
    let refused = f.engine.allocate(&report, &me()).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert_eq!(f.engine.state().allocations[&8000].owner.uid, 4242);
    // Nor a port the caller's user does not listen on.
    let report = AllocateRequest { preferred_port: Some(json!(8050)), listening: true, ..Default::default() };
    assert_eq!(f.engine.allocate(&report, &me()).unwrap_err().code, ErrorCode::Conflict);
    assert!(!f.engine.state().allocations.contains_key(&8050));
}

#[test]
fn a_moved_server_comes_back_to_its_scopes_port_and_other_users_do_not_see_the_scope() {
    let mut f = fixture();
    f.host.bind(8000);
    let moved = |scope: &str| AllocateRequest {
        preferred_port: Some(json!(8000)),
        source: Some(Source::Preload),
        scope: Some(scope.into()),
        ..Default::default()
    };
    let first = f.engine.allocate(&moved("/src/shop-b"), &me()).unwrap();
    let other = f.engine.allocate(&moved("/src/shop-c"), &me()).unwrap();
    assert_eq!((first.port, other.port), (8001, 8002));
    let a = f.engine.state().allocations[&8001].clone();
    assert_eq!(a.scope_entry(), Some(("/src/shop-b", 8000)));
    f.engine.release(&first.lock_id, &me()).unwrap();
    f.engine.release(&other.lock_id, &me()).unwrap();
    // B's server restarts after C's took a lower port: B gets 8001 again.
    let c_again = f.engine.allocate(&moved("/src/shop-c"), &me()).unwrap();
    let b_again = f.engine.allocate(&moved("/src/shop-b"), &me()).unwrap();
    assert_eq!((c_again.port, b_again.port), (8002, 8001));
    let listed = f.engine.list(&other_user()).unwrap();
    assert!(listed.iter().all(|v| v.allocation.scope.is_none()), "a scope is a path: only its user sees it");
    assert!(f.engine.list(&me()).unwrap().iter().all(|v| v.allocation.scope.is_some()));
    let bad = AllocateRequest { scope: Some("relative/dir".into()), ..moved("/x") };
    assert_eq!(f.engine.allocate(&bad, &me()).unwrap_err().code, ErrorCode::InvalidField);
}
