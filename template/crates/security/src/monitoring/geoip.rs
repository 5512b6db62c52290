//! GeoIP lookups for the geography detector of anomaly detection (LOG-4).
//!
//! Reads a MaxMind DB file (GeoLite2 or GeoIP2 City or Country, or any database of that format
//! with the same fields) once, into memory: a client address becomes its country
//! (`country.iso_code`, else `registered_country.iso_code`) and, with a City database, its
//! coordinates (`location.latitude`, `location.longitude`).
//!
//! Optional: without a database the geography detector is off. Addresses the database does not
//! know (private ranges, loopback, unallocated space) have no place and are never judged. The
//! database is read at start-up; a newer edition takes effect at the next restart.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A MaxMind DB held in memory.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

/// Why a GeoIP database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("cannot read the GeoIP database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    #[error("not a MaxMind DB: {0}")]
    Invalid(#[source] maxminddb::MaxMindDbError),
}

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    pub country: CountryCode,
    /// Absent in Country databases and for some networks of City databases.
    pub coordinates: Option<Coordinates>,
}

/// An ISO 3166-1 alpha-2 country code (`FR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Two ASCII letters, upper-cased; anything else is not a country code.
    pub fn parse(code: &str) -> Option<Self> {
        match code.as_bytes() {
            &[first, second] if first.is_ascii_alphabetic() && second.is_ascii_alphabetic() => {
                Some(Self([
                    first.to_ascii_uppercase(),
                    second.to_ascii_uppercase(),
                ]))
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// A point on the Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinates {
    pub latitude: f64,
    pub longitude: f64,
}

/// The mean radius of the Earth.
const EARTH_RADIUS_KM: f64 = 6371.0;

impl Coordinates {
    /// The great-circle distance to `other` (haversine formula).
    pub fn distance_km(self, other: Self) -> f64 {
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let half_dlat = (lat2 - lat1) / 2.0;
        let half_dlon = (other.longitude - self.longitude).to_radians() / 2.0;
        let a = half_dlat.sin().powi(2) + lat1.cos() * lat2.cos() * half_dlon.sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// The fields read from a record; every other field is skipped, not decoded.
#[derive(Deserialize)]
struct LocationRecord<'a> {
    #[serde(borrow)]
    country: Option<CountryRecord<'a>>,
    #[serde(borrow)]
    registered_country: Option<CountryRecord<'a>>,
    location: Option<LocationFields>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationFields {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl GeoIp {
    /// Reads the database at `path` into memory.
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { reader })
    }

    /// A database already in memory (tests build theirs).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(GeoIpError::Invalid)?;
        Ok(Self { reader })
    }

    /// Where `ip` is; `None` when the database does not know it or its record has no country.
    pub fn locate(&self, ip: IpAddr) -> Option<Place> {
        let result = self.reader.lookup(ip.to_canonical()).ok()?;
        let record: LocationRecord<'_> = result.decode().ok()??;
        let country = record
            .country
            .and_then(|country| country.iso_code)
            .or_else(|| {
                record
                    .registered_country
                    .and_then(|country| country.iso_code)
            })
            .and_then(CountryCode::parse)?;
        let coordinates = record.location.and_then(|location| {
            Some(Coordinates {
                latitude: location.latitude?,
                longitude: location.longitude?,
            })
            .filter(|point| point.latitude.abs() <= 90.0 && point.longitude.abs() <= 180.0)
        });
        Some(Place {
            country,
            coordinates,
        })
    }
}

/// A small City-format database for tests, in documentation address ranges:
/// `198.51.100.0/24` Paris (FR), `203.0.113.0/24` Sydney (AU), `192.0.2.0/24` New York (US),
/// `2001:db8::/32` Berlin (DE); and `100.64.0.0/24`, a Country-format record (US, no location).
#[cfg(test)]
pub(crate) fn test_database() -> GeoIp {
    #[derive(serde::Serialize)]
    struct Country {
        iso_code: &'static str,
    }
    #[derive(serde::Serialize)]
    struct Location {
        latitude: f64,
        longitude: f64,
    }
    #[derive(serde::Serialize)]
    struct City {
        country: Country,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<Location>,
    }
    let mut writer = mmdb_writer::Writer::new("GeoLite2-City");
    for (network, iso_code, location) in [
        ("198.51.100.0/24", "FR", Some((48.8566, 2.3522))),
        ("203.0.113.0/24", "AU", Some((-33.8688, 151.2093))),
        ("192.0.2.0/24", "US", Some((40.7128, -74.0060))),
        ("2001:db8::/32", "DE", Some((52.5200, 13.4050))),
        ("100.64.0.0/24", "US", None),
    ] {
        let network: ipnet::IpNet = network.parse().expect("a network");
        let record = City {
            country: Country { iso_code },
            location: location.map(|(latitude, longitude)| Location {
                latitude,
                longitude,
            }),
        };
        writer.insert(network, &record).expect("inserted");
    }
    GeoIp::from_bytes(writer.to_bytes().expect("written")).expect("a MaxMind DB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn an_address_is_located_by_country_and_coordinates() {
        let geoip = test_database();
        let paris = geoip.locate(ip("198.51.100.7")).expect("located");
        assert_eq!(paris.country.as_str(), "FR");
        let point = paris.coordinates.expect("a City record has coordinates");
        assert!((point.latitude - 48.8566).abs() < 1e-9);
        assert_eq!(
            geoip.locate(ip("2001:db8:1::5")).map(|place| place.country),
            CountryCode::parse("de")
        );
        // An IPv4-mapped IPv6 address is looked up as the IPv4 address it is.
        assert_eq!(geoip.locate(ip("::ffff:198.51.100.7")), Some(paris));
    }

    #[test]
    fn unknown_addresses_and_country_only_records_are_handled() {
        let geoip = test_database();
        for unknown in ["127.0.0.1", "10.1.2.3", "8.8.8.8", "fe80::1"] {
            assert_eq!(geoip.locate(ip(unknown)), None, "{unknown}");
        }
        let country_only = geoip.locate(ip("100.64.0.9")).expect("located");
        assert_eq!(country_only.country.as_str(), "US");
        assert_eq!(country_only.coordinates, None);
    }

    #[test]
    fn a_file_that_is_not_a_maxmind_db_is_refused() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), b"not a database").expect("write");
        assert!(matches!(
            GeoIp::open(file.path()),
            Err(GeoIpError::Open { .. })
        ));
        assert!(GeoIp::open(Path::new("/nonexistent/GeoLite2-City.mmdb")).is_err());
    }

    #[test]
    fn great_circle_distances_are_right() {
        let paris = Coordinates {
            latitude: 48.8566,
            longitude: 2.3522,
        };
        let sydney = Coordinates {
            latitude: -33.8688,
            longitude: 151.2093,
        };
        let new_york = Coordinates {
            latitude: 40.7128,
            longitude: -74.0060,
        };
        assert!((paris.distance_km(sydney) - 16_960.0).abs() < 50.0);
        assert!((paris.distance_km(new_york) - 5_837.0).abs() < 20.0);
        assert_eq!(paris.distance_km(paris), 0.0);
    }

    #[test]
    fn only_two_letters_make_a_country_code() {
        assert_eq!(CountryCode::parse("fr").map(|c| c.0), Some(*b"FR"));
        for invalid in ["", "F", "FRA", "F1", "é"] {
            assert_eq!(CountryCode::parse(invalid), None, "{invalid}");
        }
    }
}
