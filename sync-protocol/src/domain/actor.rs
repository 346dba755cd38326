//! [`Actor`]: who is making a change, as the server knows them from their verified token.
//!
//! A change is judged by the user behind the device that sent it: their user ID, role, home area
//! and, for department handlers, their department. The server itself also writes changes (the
//! assignee of an order), and is modelled as the user [`SERVER_USER`] with the admin role.
//!
//! This module must not authenticate anyone: an `Actor` is built by the server from a verified
//! token, and trusted from then on.

use serde::{Deserialize, Serialize};

use super::area::AreaPath;
use super::role::Role;

/// The user ID under which the server writes its own changes.
///
/// It is reserved: the server must refuse to register a human user with this ID, or that user
/// could write what only the server may (an order's assignee).
pub const SERVER_USER: &str = "server";

/// The author of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user ID.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// The node of the area tree the user is bound to; the user sees its subtree.
    pub area: AreaPath,
    /// For a department handler, the department whose transferred requests they handle.
    pub department: Option<String>,
}

impl Actor {
    /// The server, writing its own changes in `area` (any area: the server is not bound to one).
    pub fn server(area: AreaPath) -> Actor {
        Actor {
            user: SERVER_USER.to_owned(),
            role: Role::Admin,
            area,
            department: None,
        }
    }

    /// Whether this is the server writing its own change rather than a user.
    pub fn is_server(&self) -> bool {
        self.user == SERVER_USER && self.role == Role::Admin
    }
}
