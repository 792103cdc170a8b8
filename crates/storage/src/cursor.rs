//! Opaque keyset cursors. A cursor names the order it was made for, the
//! sort key of the last row seen and that row's id; pages continue strictly
//! after it, so rows inserted meanwhile never shift or repeat a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The sort key of a row in a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorKey {
    /// An integer key (dates as `yyyymmdd`, timestamps).
    Int(i64),
    /// A text key (folded titles and names).
    Text(String),
}

/// Which type of sort key an order uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Dates and timestamps.
    Int,
    /// Folded titles and names.
    Text,
}

/// A position in an ordered listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Which listing and order the cursor belongs to (`START_DATE_DESC`, `CITY`…).
    pub order: String,
    /// The last row's sort key.
    pub key: CursorKey,
    /// The last row's id.
    pub id: i64,
}

/// A cursor that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this hub made.
    #[error("is not a valid cursor")]
    Malformed,
    /// A cursor of another order or listing.
    #[error("belongs to another ordering; start again without `after`")]
    WrongOrder,
}

/// The longest cursor text accepted (a folded title of the longest allowed
/// length fits many times over).
const MAX_CURSOR_BYTES: usize = 4096;

impl Cursor {
    /// Encodes the cursor as opaque URL-safe text.
    pub fn encode(&self) -> String {
        let raw = match &self.key {
            CursorKey::Int(k) => format!("{}|{}|i{}", self.order, self.id, k),
            CursorKey::Text(k) => format!("{}|{}|t{}", self.order, self.id, k),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes a cursor and checks that it belongs to `order`, whose sort
    /// key is of `kind`. A key of the wrong type, or text holding control
    /// characters, is malformed: it never reaches a query.
    pub fn decode(text: &str, order: &str, kind: KeyKind) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_BYTES {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Malformed)?;
        let raw = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
        let mut parts = raw.splitn(3, '|');
        let (Some(o), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CursorError::Malformed);
        };
        let id = id.parse().map_err(|_| CursorError::Malformed)?;
        if o != order {
            return Err(CursorError::WrongOrder);
        }
        let key = match (key.split_at_checked(1), kind) {
            (Some(("i", k)), KeyKind::Int) => {
                CursorKey::Int(k.parse().map_err(|_| CursorError::Malformed)?)
            }
            (Some(("t", k)), KeyKind::Text) if !k.chars().any(char::is_control) => {
                CursorKey::Text(k.to_owned())
            }
            _ => return Err(CursorError::Malformed),
        };
        Ok(Self {
            order: o.to_owned(),
            key,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let c = Cursor {
            order: "TITLE_ASC".into(),
            key: CursorKey::Text("a|b".into()),
            id: 7,
        };
        assert_eq!(
            Cursor::decode(&c.encode(), "TITLE_ASC", KeyKind::Text),
            Ok(c.clone())
        );
        assert_eq!(
            Cursor::decode(&c.encode(), "START_DATE_DESC", KeyKind::Int),
            Err(CursorError::WrongOrder)
        );
        assert_eq!(
            Cursor::decode("!!!", "TITLE_ASC", KeyKind::Text),
            Err(CursorError::Malformed)
        );
        assert_eq!(
            Cursor::decode("eHl6", "TITLE_ASC", KeyKind::Text),
            Err(CursorError::Malformed)
        );
        // A key of the other type for its order, or holding NUL.
        let forged = URL_SAFE_NO_PAD.encode("TITLE_ASC|1|i42");
        assert_eq!(
            Cursor::decode(&forged, "TITLE_ASC", KeyKind::Text),
            Err(CursorError::Malformed)
        );
        let forged = URL_SAFE_NO_PAD.encode("START_DATE_DESC|1|tabc");
        assert_eq!(
            Cursor::decode(&forged, "START_DATE_DESC", KeyKind::Int),
            Err(CursorError::Malformed)
        );
        let forged = URL_SAFE_NO_PAD.encode("TITLE_ASC|1|ta\0b");
        assert_eq!(
            Cursor::decode(&forged, "TITLE_ASC", KeyKind::Text),
            Err(CursorError::Malformed)
        );
        let i = Cursor {
            order: "X".into(),
            key: CursorKey::Int(-5),
            id: 1,
        };
        assert_eq!(Cursor::decode(&i.encode(), "X", KeyKind::Int), Ok(i));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text decodes to a cursor of the asked order and key type, or
        /// to an error; never a panic.
        #[test]
        fn any_text_decodes_or_errs(text in any::<String>(), int in any::<bool>()) {
            let kind = if int { KeyKind::Int } else { KeyKind::Text };
            if let Ok(c) = Cursor::decode(&text, "TITLE_ASC", kind) {
                prop_assert_eq!(c.order, "TITLE_ASC");
                prop_assert_eq!(matches!(c.key, CursorKey::Int(_)), int);
            }
        }

        /// Every cursor the hub makes decodes to itself.
        #[test]
        fn cursors_round_trip(key in "[^\\p{Cc}]{0,60}", id in any::<i64>(), n in any::<i64>()) {
            let text = Cursor { order: "TITLE_ASC".into(), key: CursorKey::Text(key), id };
            prop_assert_eq!(Cursor::decode(&text.encode(), "TITLE_ASC", KeyKind::Text), Ok(text));
            let int = Cursor { order: "START_DATE_DESC".into(), key: CursorKey::Int(n), id };
            prop_assert_eq!(Cursor::decode(&int.encode(), "START_DATE_DESC", KeyKind::Int), Ok(int));
        }
    }
}
