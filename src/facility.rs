//! The syslog facility (RFC 5424 §6.2.1): a leaf type, so the config can name one without
//! knowing the syslog sink that writes it.

/// The facility names, by code.
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// A syslog facility; always one of [`FACILITIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    pub const LOCAL0: Facility = Facility(16);

    pub fn code(self) -> u8 {
        self.0
    }
}

impl Default for Facility {
    fn default() -> Self {
        Facility::LOCAL0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown facility {0:?}; use a name such as \"auth\", \"authpriv\", \"user\" or \"local0\" … \"local7\"")]
pub struct UnknownFacility(String);

impl std::str::FromStr for Facility {
    type Err = UnknownFacility;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FACILITIES
            .iter()
            .position(|f| *f == name)
            .map(|i| Facility(i as u8))
            .ok_or_else(|| UnknownFacility(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facility_names() {
        assert_eq!("local0".parse::<Facility>().map(Facility::code), Ok(16));
        assert_eq!("auth".parse::<Facility>().map(Facility::code), Ok(4));
        assert!("nope".parse::<Facility>().is_err());
        assert_eq!(Facility::default(), Facility::LOCAL0);
    }
}
