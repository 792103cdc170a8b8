//! Member cities as the secretariat registers them.

use crate::activity::check_url;
use crate::enums::CreativeField;
use crate::error::DomainError;
use crate::limits::Limits;
use crate::slug::Slug;

/// A member city as the secretariat creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct CityInput {
    /// Stable slug (`santa-fe`).
    pub slug: String,
    /// Name as the city writes it (`Montréal`).
    pub name: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// Creative fields of its designation.
    pub fields: Vec<CreativeField>,
    /// Year of designation.
    pub member_since: i32,
    /// Official website.
    pub website: Option<String>,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
}

/// A partial change to a city; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq)]

pub struct CityPatch {
    /// New name.
    pub name: Option<String>,
    /// New country.
    pub country: Option<String>,
    /// New fields.
    pub fields: Option<Vec<CreativeField>>,
    /// New year of designation.
    pub member_since: Option<i32>,
    /// New website, or cleared.
    pub website: Option<Option<String>>,
    /// New latitude, or cleared.
    pub latitude: Option<Option<f64>>,
    /// New longitude, or cleared.
    pub longitude: Option<Option<f64>>,
}

impl CityPatch {
    /// Applies the patch onto `current`.
    pub fn apply(self, mut current: CityInput) -> CityInput {
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { current.$f = v; })* };
        }
        set!(
            name,
            country,
            fields,
            member_since,
            website,
            latitude,
            longitude
        );
        current
    }
}

/// Checks an ISO 3166-1 alpha-2 code against the real list of countries.
pub fn check_country(field: &str, code: &str) -> Result<(), DomainError> {
    let upper = code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase());
    if upper && celes::Country::from_alpha2(code).is_ok() {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            format!("'{code}' is not an ISO 3166-1 alpha-2 country code (e.g. FR, JP)"),
        ))
    }
}

impl CityInput {
    /// Validates every rule; `path` names the argument (`input` or `patch`).
    pub fn validate(&self, path: &str, limits: &Limits) -> Result<(), DomainError> {
        Slug::parse(&self.slug, limits.slug_chars, &format!("{path}.slug"))?;
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > limits.title_chars {
            return Err(DomainError::invalid(
                format!("{path}.name"),
                format!("must be 1 to {} characters", limits.title_chars),
            ));
        }
        crate::chars::check_text(
            &format!("{path}.name"),
            &self.name,
            crate::chars::TextKind::Line,
        )?;
        check_country(&format!("{path}.country"), &self.country)?;
        if self.fields.is_empty() {
            return Err(DomainError::invalid(
                format!("{path}.fields"),
                "must name at least one creative field",
            ));
        }
        if self.member_since < 2004 || self.member_since > limits.max_year {
            return Err(DomainError::invalid(
                format!("{path}.memberSince"),
                format!(
                    "must be between 2004 (the network's founding) and {}",
                    limits.max_year
                ),
            ));
        }
        if let Some(url) = &self.website {
            check_url(&format!("{path}.website"), url, limits)?;
        }
        if let Some(lat) = self.latitude
            && !(-90.0..=90.0).contains(&lat)
        {
            return Err(DomainError::invalid(
                format!("{path}.latitude"),
                "must be between -90 and 90",
            ));
        }
        if let Some(lon) = self.longitude
            && !(-180.0..=180.0).contains(&lon)
        {
            return Err(DomainError::invalid(
                format!("{path}.longitude"),
                "must be between -180 and 180",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lyon() -> CityInput {
        CityInput {
            slug: "lyon".into(),
            name: "Lyon".into(),
            country: "FR".into(),
            fields: vec![CreativeField::MediaArts],
            member_since: 2008,
            website: None,
            latitude: Some(45.76),
            longitude: Some(4.83),
        }
    }

    #[test]
    fn countries_are_checked_against_the_list() {
        assert!(check_country("c", "FR").is_ok());
        assert!(check_country("c", "SE").is_ok());
        assert!(check_country("c", "XX").is_err());
        assert!(check_country("c", "fr").is_err());
        assert!(check_country("c", "FRA").is_err());
    }

    #[test]
    fn city_rules() {
        assert!(lyon().validate("input", &Limits::default()).is_ok());
        let bad = CityInput {
            latitude: Some(91.0),
            ..lyon()
        };
        assert!(bad.validate("input", &Limits::default()).is_err());
        let bad = CityInput {
            member_since: 1999,
            ..lyon()
        };
        assert!(bad.validate("input", &Limits::default()).is_err());
        let bad = CityInput {
            fields: vec![],
            ..lyon()
        };
        assert!(bad.validate("input", &Limits::default()).is_err());
    }
}
