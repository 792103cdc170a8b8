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

impl Cursor {
    /// Encodes the cursor as opaque URL-safe text.
    pub fn encode(&self) -> String {
        let raw = match &self.key {
            CursorKey::Int(k) => format!("{}|{}|i{}", self.order, self.id, k),
            CursorKey::Text(k) => format!("{}|{}|t{}", self.order, self.id, k),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes a cursor and checks that it belongs to `order`.
    pub fn decode(text: &str, order: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Malformed)?;
        let raw = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
        let mut parts = raw.splitn(3, '|');
        let (Some(o), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CursorError::Malformed);
        };
        let id = id.parse().map_err(|_| CursorError::Malformed)?;
        let key = match key.split_at_checked(1) {
            Some(("i", k)) => CursorKey::Int(k.parse().map_err(|_| CursorError::Malformed)?),
            Some(("t", k)) => CursorKey::Text(k.to_owned()),
            _ => return Err(CursorError::Malformed),
        };
        if o != order {
            return Err(CursorError::WrongOrder);
        }
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
        assert_eq!(Cursor::decode(&c.encode(), "TITLE_ASC"), Ok(c.clone()));
        assert_eq!(
            Cursor::decode(&c.encode(), "START_DATE_DESC"),
            Err(CursorError::WrongOrder)
        );
        assert_eq!(
            Cursor::decode("!!!", "TITLE_ASC"),
            Err(CursorError::Malformed)
        );
        assert_eq!(
            Cursor::decode("eHl6", "TITLE_ASC"),
            Err(CursorError::Malformed)
        );
        let i = Cursor {
            order: "X".into(),
            key: CursorKey::Int(-5),
            id: 1,
        };
        assert_eq!(Cursor::decode(&i.encode(), "X"), Ok(i));
    }
}
