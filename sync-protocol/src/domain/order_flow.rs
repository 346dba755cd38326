//! Volunteer orders (群众点单、党员接单): claims, the order's status, and the arbitration that
//! gives each order to exactly one volunteer.
//!
//! Volunteers take an order by appending a claim `{volunteer, device?, at}` to its `claims` list,
//! offline if need be. Two volunteers who tap "take" at the same time while both offline both
//! append, and Automerge keeps both claims: a plain merge cannot choose one. So the server
//! arbitrates. It records durably, per order, the order in which it first received each
//! volunteer's claim, and the winner is the claim it received first ([`winning_claim`]). The
//! server then writes `assignee` and sets `status` to `assigned` as its own change, which syncs
//! to every device; the losing device sees an assignee that is not its user.
//!
//! The position of claims in the merged list is no substitute for that record. Concurrent claims
//! land in the list in an order Automerge derives from operation IDs (actor IDs and counters),
//! not from when anyone tapped or when the server heard of them, so the list order would let the
//! device with the "larger" actor ID win every race, and a claim that arrived later could
//! reorder an earlier arbitration. `at` is no better: it is the device's own clock.
//!
//! This module is pure: it reads documents and decides. It must not write the assignee (the
//! server does, through [`builders::assign_order`](super::builders::assign_order)) nor decide
//! who may claim (that is [`write_rules`](super::write_rules)).

use automerge::Automerge;
use serde::{Deserialize, Serialize};

use super::keys;
use super::read::Node;
use super::schema::SchemaError;

wire_enum! {
    /// Where an order stands.
    pub enum OrderStatus / OrderStatusError ("order status") {
        /// Placed, waiting for a volunteer.
        Open = "open",
        /// The server gave it to a volunteer (the `assignee`).
        Assigned = "assigned",
        /// The assigned volunteer did it.
        Done = "done",
        /// Called off.
        Cancelled = "cancelled",
    }
}

/// One volunteer's claim on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The claiming volunteer's user ID.
    pub volunteer: String,
    /// The device the claim was made on, when the client says.
    pub device: Option<String>,
    /// When, in milliseconds since the Unix epoch, by the device's clock.
    pub at: i64,
}

impl Claim {
    /// Reads the claim map `node`.
    pub(super) fn read(node: &Node<'_>) -> Result<Claim, SchemaError> {
        Ok(Claim {
            volunteer: node.req_id(keys::VOLUNTEER)?,
            device: node.opt_id(keys::DEVICE)?,
            at: node.req_int(keys::AT)?,
        })
    }
}

/// The winning claim: the claim of the first volunteer in `received_order` who has one.
///
/// `received_order` lists volunteer IDs in the order the server first received their claims
/// (duplicates are harmless). A claim whose volunteer the server has no record of cannot win;
/// with no eligible claim there is no winner yet. When one volunteer has several claims (a
/// double tap), their first in list order is returned.
pub fn winning_claim(claims: &[Claim], received_order: &[String]) -> Option<Claim> {
    received_order.iter().find_map(|volunteer| {
        claims
            .iter()
            .find(|claim| claim.volunteer == *volunteer)
            .cloned()
    })
}

/// Reads the `claims` of the order document `doc`, in list order.
pub fn read_claims(doc: &Automerge) -> Result<Vec<Claim>, SchemaError> {
    Node::root(doc)
        .req_list(keys::CLAIMS)?
        .maps()?
        .iter()
        .map(Claim::read)
        .collect()
}

/// Reads the `status` of the order document `doc`.
pub fn read_order_status(doc: &Automerge) -> Result<OrderStatus, SchemaError> {
    Node::root(doc).req_parsed(keys::STATUS)
}

/// Reads the `assignee` of the order document `doc`, if the server has written one.
pub fn read_assignee(doc: &Automerge) -> Result<Option<String>, SchemaError> {
    Node::root(doc).opt_id(keys::ASSIGNEE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(volunteer: &str, at: i64) -> Claim {
        Claim {
            volunteer: volunteer.to_owned(),
            device: None,
            at,
        }
    }

    fn ids(volunteers: &[&str]) -> Vec<String> {
        volunteers.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn the_first_claim_the_server_received_wins_whatever_the_list_order() {
        // The merged list put Li first, and Li's clock says earlier, but the server heard
        // from Wang first.
        let claims = [claim("li", 100), claim("wang", 200)];
        let winner = winning_claim(&claims, &ids(&["wang", "li"])).unwrap();
        assert_eq!(winner.volunteer, "wang");
        assert_eq!(
            winning_claim(&claims, &ids(&["li", "wang"]))
                .unwrap()
                .volunteer,
            "li"
        );
    }

    #[test]
    fn no_claims_or_no_record_means_no_winner() {
        assert_eq!(winning_claim(&[], &ids(&["wang"])), None);
        assert_eq!(winning_claim(&[claim("li", 1)], &[]), None);
        // The server's record names a volunteer whose claim is not in this replica yet.
        assert_eq!(
            winning_claim(&[claim("li", 1)], &ids(&["wang", "li"]))
                .unwrap()
                .volunteer,
            "li"
        );
    }

    #[test]
    fn a_double_tap_returns_the_volunteers_first_claim() {
        let claims = [claim("li", 5), claim("li", 6)];
        assert_eq!(winning_claim(&claims, &ids(&["li", "li"])).unwrap().at, 5);
    }

    #[test]
    fn order_statuses_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.to_string().parse::<OrderStatus>(), Ok(*status));
        }
    }
}
