//! The write rules: whether a device's change to a document is accepted, judged on the document
//! before and after the change.
//!
//! The server receives a change into a fork of the stored document, so it holds `before` (as
//! stored) and `after` (with the change applied), and calls [`check_change`] before storing or
//! relaying anything. A refusal is a [`Forbidden`] whose message goes back to the device.
//!
//! In both cases below, "valid" means the document after the change fits its schema under the
//! configured [`SchemaLimits`], *and* so does every operation of every new change
//! ([`schema`](super::schema), `schema/ops`): a value written and deleted again is refused like
//! one that stays, because the history is what every reader receives.
//!
//! **Creation** (no stored document): the new document must be valid, the role may create its
//! kind, its `area` is inside the user's area, `createdBy` is the user. A new request's events
//! are all by the user; its first `collected` event comes with creating it (station staff may
//! raise a request although they add no events later), further events need the event table. A
//! new order is open, unclaimed and unassigned.
//!
//! **Update**: the user may read the document as stored (area, kind, department; see
//! [`access::check_read`](super::access::check_read)); the common fields are unchanged; the
//! document after is valid; the role may write to the kind at all; and each changed ROOT field
//! is allowed:
//!
//! - request `timeline` is append-only: every existing event is still there, unchanged, in the
//!   same order; each new event is `by` the user, of a type the role may add, and was appended
//!   after every event its author had seen (see below);
//! - order `claims` is append-only too; only volunteers add claims, and only their own;
//! - order `assignee` is written only by the server, and only the server sets `status` to
//!   `assigned`; the assignee sets `assigned` → `done`; those who may edit orders set `done` and
//!   `cancelled`;
//! - every other field may be changed by the roles in the edit table (`access::may_edit`).
//!
//! The server writes as [`Actor::server`]: it skips the read check and may write anything but
//! events and claims.
//!
//! # Why structural comparison, not patches
//!
//! The rules are about results ("every old event is still there, unchanged"), so they compare
//! the two documents field by field, by operation identity (see `compare`). `Automerge::diff`
//! patches describe how to move a view from one state to the other, by index: for a list that
//! grew in the middle because of a concurrent append they say "insert at 3", and proving from
//! that that nothing else moved means replaying them. And they describe the visible state,
//! while some rules are about operations: a fixed field rewritten with its own value, or a
//! conflicting value planted next to it, changes no visible value but is still a write.
//!
//! # Appended, in a CRDT
//!
//! A device that was offline appends after the last event it had; merged with events the server
//! received meanwhile, Automerge may place it before them. That is an append, and must be
//! accepted, or two devices could not walk a request's loop concurrently. What is refused is an
//! insertion in front of an event the author had already seen: the events an author had seen are
//! those in the timeline at the dependencies of the change that inserted the new event. A change
//! that lies about its dependencies cannot be told from an honest offline append; the state
//! machine then decides whether the event counts where it landed, and the trace keeps it.

mod compare;

use automerge::{Automerge, Change, ObjId, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};

use self::compare::ListDiff;
use super::access::{check_read, may_add_event, may_create, may_edit, may_write};
use super::actor::Actor;
use super::date::LocalDate;
use super::event::Event;
use super::forbidden::Forbidden;
use super::keys;
use super::kind::Kind;
use super::listening_day::ListeningDays;
use super::order_flow::{OrderStatus, read_assignee, read_claims, read_order_status};
use super::read::Node;
use super::request_flow::{read_events, status};
use super::role::Role;
use super::schema::{DocInfo, SchemaLimits, check_operations, validate_with};
use super::wire_enum::clip;

/// The configuration the write rules need: what is flagged, and how long strings and lists may
/// be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckConfig {
    /// The days of the month visits are expected on.
    pub listening_days: ListeningDays,
    /// How long strings and lists may be, and how many operations a change may hold.
    pub limits: SchemaLimits,
}

/// Something about an accepted change that the server should act on or record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum Flag {
    /// The order is open, unassigned and has claims: the server should pick the winner
    /// ([`winning_claim`](super::order_flow::winning_claim)) and write the assignee.
    ArbitrateOrder,
    /// New timeline events that are not valid where they landed: kept, but ignored by the state
    /// machine. Indices are in the timeline after the change.
    IgnoredEvents { indices: Vec<usize> },
    /// The visit, created or re-dated by this change, is not on a listening day.
    OffListeningDay { date: LocalDate },
}

/// An accepted change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The document's common fields.
    pub info: DocInfo,
    /// Whether the change created the document.
    pub created: bool,
    /// The volunteers whose claims this change added, in list order. The server appends them to
    /// its durable record of the order in which it received claims, before arbitrating.
    pub new_claims: Vec<String>,
    /// What the server should act on.
    pub flags: Vec<Flag>,
}

/// Judges a change with the default [`CheckConfig`]. See [`check_change_with`].
pub fn check_change(
    actor: &Actor,
    info_before: Option<&DocInfo>,
    before: &Automerge,
    after: &Automerge,
) -> Result<Outcome, Forbidden> {
    check_change_with(&CheckConfig::default(), actor, info_before, before, after)
}

/// Judges the change that turned `before` into `after`, made by `actor`.
///
/// `info_before` is the stored document's common fields, or `None` when the change creates the
/// document (then `before` is ignored). `after` must be `before` with the change applied: it
/// must contain every change of `before`.
pub fn check_change_with(
    config: &CheckConfig,
    actor: &Actor,
    info_before: Option<&DocInfo>,
    before: &Automerge,
    after: &Automerge,
) -> Result<Outcome, Forbidden> {
    let empty = Automerge::new();
    let (info, before, new_claims, new_events) = match info_before {
        None => {
            let (info, new_events) = check_creation(&config.limits, actor, after)?;
            (info, &empty, Vec::new(), new_events)
        }
        Some(info_before) => {
            let checked = check_update(&config.limits, actor, info_before, before, after)?;
            (checked.info, before, checked.new_claims, checked.new_events)
        }
    };
    let flags = flags(config, &info, before, after, &new_events)?;
    Ok(Outcome {
        created: info_before.is_none(),
        info,
        new_claims,
        flags,
    })
}

/// What [`check_update`] found.
struct Update {
    info: DocInfo,
    new_claims: Vec<String>,
    new_events: Vec<usize>,
}

/// Checks that `after` fits its schema, and that so does every operation of the changes it
/// has beyond `before`: data written and deleted again stays in the history every reader
/// receives (see `schema/ops`).
fn check_schema(
    limits: &SchemaLimits,
    before: &Automerge,
    after: &Automerge,
) -> Result<DocInfo, Forbidden> {
    let info = validate_with(after, limits)?;
    let new_changes = after.get_changes(&before.get_heads());
    check_operations(info.kind, &new_changes, before, after, limits)?;
    Ok(info)
}

fn check_creation(
    limits: &SchemaLimits,
    actor: &Actor,
    after: &Automerge,
) -> Result<(DocInfo, Vec<usize>), Forbidden> {
    let info = check_schema(limits, &Automerge::new(), after)?;
    if !may_create(actor.role, info.kind) {
        return Err(Forbidden::MayNotCreate {
            role: actor.role,
            kind: info.kind,
        });
    }
    if !actor.area.contains(&info.area) {
        return Err(Forbidden::OutsideArea {
            area: info.area,
            yours: actor.area.clone(),
        });
    }
    if info.created_by != actor.user {
        return Err(Forbidden::NotCreator {
            created_by: clip(&info.created_by),
            user: actor.user.clone(),
        });
    }
    let mut new_events = Vec::new();
    match info.kind {
        Kind::Request => {
            let events = read_events(after)?;
            for (index, event) in events.iter().enumerate() {
                // The first event is the `collected` the schema requires: raising the request
                // is collecting it, whoever may raise one.
                let allowed = index == 0 || may_add_event(actor.role, event.event_type());
                check_new_event(actor, index, event, allowed)?;
                new_events.push(index);
            }
        }
        Kind::Order => {
            if read_order_status(after)? != OrderStatus::Open {
                return Err(Forbidden::OrderNotFresh {
                    field: keys::STATUS,
                });
            }
            if !read_claims(after)?.is_empty() {
                return Err(Forbidden::OrderNotFresh {
                    field: keys::CLAIMS,
                });
            }
            if read_assignee(after)?.is_some() {
                return Err(Forbidden::OrderNotFresh {
                    field: keys::ASSIGNEE,
                });
            }
        }
        Kind::Household | Kind::Visit | Kind::StationLog => {}
    }
    Ok((info, new_events))
}

fn check_update(
    limits: &SchemaLimits,
    actor: &Actor,
    info_before: &DocInfo,
    before: &Automerge,
    after: &Automerge,
) -> Result<Update, Forbidden> {
    let server = actor.is_server();
    // Reading first: someone who may not see the document learns nothing about it, not even
    // whether their change would have been valid.
    if !server {
        check_read(actor, info_before, before)?;
    }
    for field in keys::COMMON {
        if !compare::same_key(before, after, &ROOT, field) {
            return Err(Forbidden::FixedField { field });
        }
    }
    let info = check_schema(limits, before, after)?;
    let changed = compare::changed_keys(before, after, &ROOT);
    // A change that leaves every field as it was (an empty change) harms nobody, whoever sends it.
    if !changed.is_empty() && !server && !may_write(actor.role, info.kind) {
        return Err(Forbidden::MayNotWrite {
            role: actor.role,
            kind: info.kind,
        });
    }
    let mut update = Update {
        info,
        new_claims: Vec::new(),
        new_events: Vec::new(),
    };
    let kind = update.info.kind;
    for field in changed {
        match (kind, field.as_str()) {
            (Kind::Request, keys::TIMELINE) => {
                update.new_events = check_timeline(actor, before, after)?;
            }
            (Kind::Order, keys::CLAIMS) => {
                update.new_claims = check_claims(actor, before, after)?;
            }
            (Kind::Order, keys::ASSIGNEE) if !server => {
                return Err(Forbidden::ServerOnly {
                    what: "write `assignee`",
                });
            }
            (Kind::Order, keys::STATUS) if !server => check_order_status(actor, before, after)?,
            _ if server || may_edit(actor.role, kind) => {}
            _ => {
                return Err(Forbidden::ReadOnlyField {
                    role: actor.role,
                    kind,
                    field: clip(&field),
                });
            }
        }
    }
    Ok(update)
}

/// Checks one event the actor adds.
fn check_new_event(
    actor: &Actor,
    index: usize,
    event: &Event,
    allowed: bool,
) -> Result<(), Forbidden> {
    if event.by != actor.user {
        return Err(Forbidden::EventByOther {
            index,
            by: clip(&event.by),
            user: actor.user.clone(),
        });
    }
    if !allowed {
        return Err(Forbidden::EventNotAllowed {
            role: actor.role,
            event: event.event_type(),
        });
    }
    Ok(())
}

/// The ROOT list `field` of `before`, if `after` still has the very same list (no replacement,
/// no conflicting second list).
fn same_list(
    before: &Automerge,
    after: &Automerge,
    field: &'static str,
) -> Result<ObjId, Forbidden> {
    // Every value at the key counts, whatever its type: a scalar planted as a conflict next to
    // the list is a replacement waiting to win.
    let ids = |doc: &Automerge| -> Vec<ObjId> {
        doc.get_all(ROOT, field)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    };
    match (ids(before).as_slice(), ids(after).as_slice()) {
        ([list_before], [list_after]) if list_before == list_after => Ok(list_before.clone()),
        _ => Err(Forbidden::ListReplaced { field }),
    }
}

/// Checks the new events of a request's timeline; returns their indices after the change.
fn check_timeline(
    actor: &Actor,
    before: &Automerge,
    after: &Automerge,
) -> Result<Vec<usize>, Forbidden> {
    let timeline = same_list(before, after, keys::TIMELINE)?;
    let new = match compare::diff_list(before, after, &timeline) {
        ListDiff::Grown(new) => new,
        ListDiff::Rewritten(index) => return Err(Forbidden::TimelineRewritten { index }),
    };
    if new.is_empty() {
        return Ok(new);
    }
    let events = read_events(after)?;
    let element_ids = compare::element_ids(after, &timeline);
    let new_changes = after.get_changes(&before.get_heads());
    for &index in &new {
        let event = &events[index];
        check_new_event(
            actor,
            index,
            event,
            may_add_event(actor.role, event.event_type()),
        )?;
        if !appended(after, &timeline, &element_ids, &new, index, &new_changes) {
            return Err(Forbidden::EventNotAppended { index });
        }
    }
    Ok(new)
}

/// Whether the new element at `index` of the list `list` comes after every old element its
/// author had seen.
///
/// The author had seen the list as it was at the dependencies of the change that inserted the
/// element. An old element that follows the new one must be one the author had not seen: a
/// concurrent append that Automerge happened to order after it.
fn appended(
    after: &Automerge,
    list: &ObjId,
    element_ids: &[ObjId],
    new: &[usize],
    index: usize,
    new_changes: &[Change],
) -> bool {
    let ObjId::Id(counter, actor, _) = &element_ids[index] else {
        return false;
    };
    let inserting = new_changes.iter().find(|change| {
        change.actor_id() == actor
            && change.start_op().get() <= *counter
            && *counter <= change.max_op()
    });
    let Some(inserting) = inserting else {
        // The element is new, so some new change made it; not finding one means `after` is
        // not `before` plus changes. Refuse rather than guess.
        return false;
    };
    let deps = inserting.deps();
    // The author must at least have known the list it inserted into.
    let knew_list = after
        .get_at(ROOT, keys::TIMELINE, deps)
        .ok()
        .flatten()
        .is_some_and(|(_, id)| id == *list);
    if !knew_list {
        return false;
    }
    let seen = compare::element_ids_at(after, list, deps);
    element_ids[index + 1..]
        .iter()
        .enumerate()
        .filter(|(offset, _)| !new.contains(&(index + 1 + offset)))
        .all(|(_, later)| !seen.contains(later))
}

/// Checks the new claims of an order; returns the claiming volunteers in list order.
fn check_claims(
    actor: &Actor,
    before: &Automerge,
    after: &Automerge,
) -> Result<Vec<String>, Forbidden> {
    let list = same_list(before, after, keys::CLAIMS)?;
    let new = match compare::diff_list(before, after, &list) {
        ListDiff::Grown(new) => new,
        ListDiff::Rewritten(index) => return Err(Forbidden::ClaimsRewritten { index }),
    };
    if new.is_empty() {
        return Ok(Vec::new());
    }
    if actor.role != Role::Volunteer || actor.is_server() {
        return Err(Forbidden::MayNotClaim { role: actor.role });
    }
    let claims = read_claims(after)?;
    new.iter()
        .map(|&index| {
            let claim = &claims[index];
            if claim.volunteer == actor.user {
                Ok(claim.volunteer.clone())
            } else {
                Err(Forbidden::ClaimByOther {
                    index,
                    volunteer: clip(&claim.volunteer),
                    user: actor.user.clone(),
                })
            }
        })
        .collect()
}

/// Checks a change of an order's `status` by someone other than the server.
fn check_order_status(
    actor: &Actor,
    before: &Automerge,
    after: &Automerge,
) -> Result<(), Forbidden> {
    let from = read_order_status(before)?;
    let to = read_order_status(after)?;
    let editor = may_edit(actor.role, Kind::Order);
    let allowed = match (from, to) {
        (_, OrderStatus::Assigned) if from != to => {
            return Err(Forbidden::ServerOnly {
                what: "set `status` to `assigned`",
            });
        }
        // Writing the value it already has changes nothing anyone can see; it happens when two
        // devices of the same user both mark an order done.
        _ if from == to => editor || assignee_is_actor(actor, before)?,
        (OrderStatus::Assigned, OrderStatus::Done) => editor || assignee_is_actor(actor, before)?,
        (OrderStatus::Open | OrderStatus::Assigned, OrderStatus::Cancelled) => editor,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Forbidden::StatusChange {
            role: actor.role,
            from,
            to,
        })
    }
}

/// Whether `actor` is the assignee of the order `doc`.
fn assignee_is_actor(actor: &Actor, doc: &Automerge) -> Result<bool, Forbidden> {
    Ok(read_assignee(doc)?.as_deref() == Some(actor.user.as_str()))
}

/// The flags of an accepted change.
fn flags(
    config: &CheckConfig,
    info: &DocInfo,
    before: &Automerge,
    after: &Automerge,
    new_events: &[usize],
) -> Result<Vec<Flag>, Forbidden> {
    let mut flags = Vec::new();
    match info.kind {
        Kind::Request if !new_events.is_empty() => {
            let flow = status(&read_events(after)?);
            let indices: Vec<usize> = new_events
                .iter()
                .copied()
                .filter(|index| flow.ignored.contains(index))
                .collect();
            if !indices.is_empty() {
                flags.push(Flag::IgnoredEvents { indices });
            }
        }
        Kind::Order => {
            let unassigned =
                read_order_status(after)? == OrderStatus::Open && read_assignee(after)?.is_none();
            if unassigned && !read_claims(after)?.is_empty() {
                flags.push(Flag::ArbitrateOrder);
            }
        }
        Kind::Visit => {
            let date: LocalDate = Node::root(after).req_parsed(keys::DATE)?;
            let dated_now = !compare::same_key(before, after, &ROOT, keys::DATE);
            if dated_now && !config.listening_days.includes(date) {
                flags.push(Flag::OffListeningDay { date });
            }
        }
        Kind::Request | Kind::Household | Kind::StationLog => {}
    }
    Ok(flags)
}

#[cfg(test)]
mod tests;
