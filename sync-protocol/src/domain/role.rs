//! [`Role`]: what a user does in the field, which decides what the user may read and write.
//!
//! The roles are the people of the field (see `domain.md`): the sentiment secretary team
//! (民情书记), grid workers (网格员), party-member volunteers (党员志愿者), service-station staff
//! (驿站工作人员), department handlers (职能部门), supervisors (督办) and administrators. A user
//! has exactly one role. This module names them; what each may do is the policy in
//! [`access`](super::access), and it must not be decided here.

wire_enum! {
    /// The role of a user.
    pub enum Role / RoleError ("role") {
        /// 民情书记 (团队): visits households on listening days, records visits and requests.
        Secretary = "secretary",
        /// 网格员: owns one grid, reports and follows up requests, places orders.
        GridWorker = "grid_worker",
        /// 党员志愿者: takes service orders.
        Volunteer = "volunteer",
        /// 驿站工作人员: logs the services a station delivers.
        StationStaff = "station_staff",
        /// 职能部门: handles requests transferred to the department.
        DepartmentHandler = "department_handler",
        /// 街道/社区 领导, 督办: reads figures, triages and closes requests.
        Supervisor = "supervisor",
        /// 管理员: keeps the area tree, users and devices.
        Admin = "admin",
    }
}

impl Role {
    /// The people who have this role, in plural, for messages such as "volunteers may not add
    /// `triaged` events to a request".
    pub const fn people(self) -> &'static str {
        match self {
            Role::Secretary => "secretaries",
            Role::GridWorker => "grid workers",
            Role::Volunteer => "volunteers",
            Role::StationStaff => "station staff",
            Role::DepartmentHandler => "department handlers",
            Role::Supervisor => "supervisors",
            Role::Admin => "admins",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_wire_name_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
            let json = serde_json::to_string(role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), *role);
        }
        assert_eq!(Role::GridWorker.to_string(), "grid_worker");
        assert_eq!(
            "station_staff".parse::<Role>(),
            Ok(Role::StationStaff),
            "the wire name uses an underscore"
        );
    }

    #[test]
    fn unknown_roles_are_refused_with_the_list_of_known_ones() {
        let error = "Grid_Worker".parse::<Role>().unwrap_err();
        assert_eq!(error.value, "Grid_Worker");
        assert!(error.to_string().contains("grid_worker, volunteer"));
        assert!(serde_json::from_str::<Role>("\"mayor\"").is_err());
    }
}
