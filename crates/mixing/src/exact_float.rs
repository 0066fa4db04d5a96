//! Bit-exact f64 in checkpointed mixer state.
//!
//! serde_json's default number parser is not always correctly rounded, so a float written to a
//! checkpoint and read back can differ in its last bit, and a resumed run would drift from an
//! uninterrupted one. Mixer states therefore write floats as strings of Rust's shortest
//! round-trip form (`"0.1"`, `"-inf"`, `"NaN"`), which `str::parse` reads back exactly; plain
//! JSON numbers are accepted too, for hand-written states.
//!
//! Use with `#[serde(with = "mixlab_mixing::exact_float::scalar")]` on an `f64` field,
//! `...::option` on `Option<f64>` and `...::vec` on `Vec<f64>`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// The string form of `x` that parses back to the same bits.
pub fn to_string(x: f64) -> String {
    format!("{x:?}")
}

/// Reads a float written by [`to_string`] or as a JSON number.
pub fn from_value(value: &Value) -> Result<f64, String> {
    match value {
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|e| format!("{s:?} is not a float: {e}")),
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a float")),
        other => Err(format!("expected a float, found {other}")),
    }
}

/// `f64` fields.
pub mod scalar {
    use super::*;

    /// Writes the float as an exact string.
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_string(*x))
    }

    /// Reads a string or number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_value(&Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// `Option<f64>` fields (`null` for `None`).
pub mod option {
    use super::*;

    /// Writes `null` or an exact string.
    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) => s.serialize_some(&to_string(*x)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null`, a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            v => from_value(&v).map(Some).map_err(D::Error::custom),
        }
    }
}

/// `Vec<f64>` fields.
pub mod vec {
    use super::*;
    use serde::ser::SerializeSeq;

    /// Writes a list of exact strings.
    pub fn serialize<S: Serializer>(xs: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(xs.len()))?;
        for x in xs {
            seq.serialize_element(&to_string(*x))?;
        }
        seq.end()
    }

    /// Reads a list of strings or numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Value>::deserialize(d)?
            .iter()
            .map(|v| from_value(v).map_err(D::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        #[serde(with = "scalar")]
        a: f64,
        #[serde(with = "option")]
        b: Option<f64>,
        #[serde(with = "vec")]
        c: Vec<f64>,
    }

    #[test]
    fn round_trips_every_bit_through_text() {
        // Values whose shortest decimal form serde_json's fast parser may misround.
        let mut c: Vec<f64> = (1..2000).map(|i| 1.0 / (i as f64 * 3.0 + 0.7)).collect();
        c.extend([
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            -0.0,
            5e-324,
        ]);
        let s = State {
            a: 0.1 + 0.2,
            b: Some(2.0f64.sqrt()),
            c,
        };
        let text = serde_json::to_string(&s).expect("serialise");
        let back: State = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back.a.to_bits(), s.a.to_bits());
        assert_eq!(back.b.map(f64::to_bits), s.b.map(f64::to_bits));
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.c), bits(&s.c));
    }

    #[test]
    fn accepts_numbers_and_null() {
        let back: State = serde_json::from_str(r#"{"a": 0.5, "b": null, "c": [1, "2.5", "-inf"]}"#)
            .expect("hand-written state");
        assert_eq!(back.a, 0.5);
        assert_eq!(back.b, None);
        assert_eq!(back.c, vec![1.0, 2.5, f64::NEG_INFINITY]);
        assert!(serde_json::from_str::<State>(r#"{"a": "x", "b": null, "c": []}"#).is_err());
        assert!(serde_json::from_str::<State>(r#"{"a": true, "b": null, "c": []}"#).is_err());
    }
}
