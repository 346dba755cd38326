//! [`Origin`]: where a request (诉求) came from.
//!
//! A request is raised during a listening-day visit, by a grid worker on patrol, through the
//! hotline, at a service station, or otherwise. Supervisors count requests by origin. This
//! module only names the origins; it must not decide who may raise a request from where.

wire_enum! {
    /// Where a request came from: the request's `origin` field.
    pub enum Origin / OriginError ("request origin") {
        /// Raised during a listening-day household visit; the request's `visit` names it.
        Visit = "visit",
        /// Reported by a grid worker in their grid.
        Grid = "grid",
        /// Came in through the hotline (12345 and the like).
        Hotline = "hotline",
        /// Raised at a service station.
        Station = "station",
        /// Anything else.
        Other = "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip() {
        for origin in Origin::ALL {
            assert_eq!(origin.to_string().parse::<Origin>(), Ok(*origin));
        }
        assert!("walk-in".parse::<Origin>().is_err());
    }
}
