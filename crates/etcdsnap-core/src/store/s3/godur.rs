//! `--etcd-s3-timeout` as K3s writes it into JSON: Go duration text (`"5m0s"`), parsed and
//! formatted by [`crate::duration`].

/// Serde adapter for a [`Duration`](std::time::Duration) held as Go duration text. Negative
/// values read as zero so that validation reports K3s's "must be greater than 0s"; a bare number
/// is nanoseconds, as Go's JSON encoding of a `time.Duration` gives.
pub(crate) mod serde_go {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::duration::{format_go_duration, parse_go_duration_signed};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_go_duration(*d))
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(i64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => match parse_go_duration_signed(&t).map_err(D::Error::custom)? {
                (true, _) => Ok(Duration::ZERO),
                (false, d) => Ok(d),
            },
            Raw::Nanos(n) => Ok(Duration::from_nanos(n.max(0) as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super::serde_go")]
        d: Duration,
    }

    #[test]
    fn json_round_trip_and_negative_as_zero() {
        let t = T {
            d: Duration::from_secs(300),
        };
        assert_eq!(serde_json::to_string(&t).unwrap(), r#"{"d":"5m0s"}"#);
        let back: T = serde_json::from_str(r#"{"d":"1h30m"}"#).unwrap();
        assert_eq!(back.d, Duration::from_secs(5400));
        let neg: T = serde_json::from_str(r#"{"d":"-5m"}"#).unwrap();
        assert_eq!(neg.d, Duration::ZERO);
        let nanos: T = serde_json::from_str(r#"{"d":2000000000}"#).unwrap();
        assert_eq!(nanos.d, Duration::from_secs(2));
        assert!(serde_json::from_str::<T>(r#"{"d":"5 m"}"#).is_err());
    }
}
