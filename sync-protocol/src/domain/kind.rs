//! [`Kind`]: what a document is about, fixed when the document is created.
//!
//! Every Lianxin document carries its kind in the ROOT field `kind`. The kind decides the
//! document's schema and who may see it. This module only names the kinds; their fields are
//! checked in [`schema`](super::schema) and their access in [`access`](super::access).

wire_enum! {
    /// The kind of a document.
    pub enum Kind / KindError ("document kind") {
        /// One household (户): address and residents. The only kind that holds personal data.
        Household = "household",
        /// One listening-day household visit (民意"5"来听).
        Visit = "visit",
        /// One request (诉求) and its timeline through the closed loop.
        Request = "request",
        /// One volunteer service order (群众点单、党员接单).
        Order = "order",
        /// One service station's log of one day (红帆驿站).
        StationLog = "station_log",
    }
}

impl Kind {
    /// Whether documents of this kind may hold residents' personal data (names, phone numbers,
    /// ID numbers). Only households do; every other kind refers to a household by its ID.
    pub const fn holds_personal_data(self) -> bool {
        matches!(self, Kind::Household)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_wire_name() {
        for kind in Kind::ALL {
            assert_eq!(kind.to_string().parse::<Kind>(), Ok(*kind));
        }
        assert_eq!("station_log".parse(), Ok(Kind::StationLog));
        assert!("stationLog".parse::<Kind>().is_err());
    }

    #[test]
    fn only_households_hold_personal_data() {
        let holders: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|kind| kind.holds_personal_data())
            .collect();
        assert_eq!(holders, [Kind::Household]);
    }
}
