//! The `geography` detector, on with a GeoIP database ([`crate::monitoring::geoip`]): a principal
//! seen from a country new to it once it has a history (`new_country`), or from two places
//! farther apart than `max_travel_speed_kmh` allows in the time between (`impossible_travel`).
//! GeoIP places are approximate: closer than `min_travel_distance_km` is never impossible. Each
//! principal keeps a bounded list of countries and its last located sighting.

use super::bounded_map::BoundedMap;
use super::config::AnomalyConfig;
use super::finding::{Anomaly, AnomalyKind, Seen};
use super::window::{Cooldown, Tick};
use crate::monitoring::geoip::{Coordinates, CountryCode, GeoIp};

/// Countries remembered per principal; the oldest makes room.
const MAX_COUNTRIES_PER_PRINCIPAL: usize = 16;

/// Where a principal has been seen.
#[derive(Debug, Default)]
pub(super) struct GeoProfile {
    /// Countries seen, oldest first, at most [`MAX_COUNTRIES_PER_PRINCIPAL`].
    countries: Vec<CountryCode>,
    /// Located sightings so far.
    sightings: u32,
    /// The last sighting with coordinates: when and where.
    last_located: Option<(u64, Coordinates)>,
    new_country: Cooldown,
    travel: Cooldown,
}

impl GeoProfile {
    fn learn_country(&mut self, country: CountryCode) {
        if self.countries.len() >= MAX_COUNTRIES_PER_PRINCIPAL {
            self.countries.remove(0);
        }
        self.countries.push(country);
    }
}

/// New countries and impossible travel per principal.
#[derive(Debug)]
pub(super) struct UnusualGeography {
    geoip: GeoIp,
    pub(super) principals: BoundedMap<String, GeoProfile>,
}

impl UnusualGeography {
    /// Locates with `geoip`; at most `capacity` principals.
    pub(super) fn new(geoip: GeoIp, capacity: usize) -> Self {
        Self {
            geoip,
            principals: BoundedMap::new(capacity),
        }
    }

    /// Judges one sighting of a principal; pushes to `found` what it tipped over.
    pub(super) fn inspect(
        &mut self,
        config: &AnomalyConfig,
        tick: Tick,
        seen: &Seen<'_>,
        found: &mut Vec<Anomaly>,
    ) {
        let Some(client_ip) = seen.client_ip else {
            return;
        };
        let Some(place) = self.geoip.locate(client_ip) else {
            return;
        };
        let cooldown = config.cooldown.as_secs();
        let profile =
            self.principals
                .touch(seen.principal.to_owned(), tick.now, GeoProfile::default);
        if !profile.countries.contains(&place.country) {
            if profile.sightings >= config.min_history_requests
                && profile.new_country.try_alert(tick.now, cooldown)
            {
                found.push(seen.anomaly(AnomalyKind::NewCountry));
            }
            profile.learn_country(place.country);
        }
        // After a clock step back the time between is unknown: not judged.
        if let (Some((then, from)), Some(to)) = (profile.last_located, place.coordinates)
            && then <= tick.now
        {
            let distance_km = from.distance_km(to);
            let hours = tick.now.saturating_sub(then) as f64 / 3600.0;
            if distance_km >= config.min_travel_distance_km
                && distance_km > config.max_travel_speed_kmh * hours
                && profile.travel.try_alert(tick.now, cooldown)
            {
                found.push(seen.anomaly(AnomalyKind::ImpossibleTravel));
            }
        }
        if let Some(to) = place.coordinates {
            profile.last_located = Some((tick.now, to));
        }
        profile.sightings = profile.sightings.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::audit::Outcome;
    use crate::monitoring::anomaly::config::AnomalyConfig;
    use crate::monitoring::anomaly::detectors::Detectors;
    use crate::monitoring::anomaly::synthetic_traffic::{
        ATTACK, MINUTE, NEW_YORK, SYDNEY, after_a_normal_day, at_host, feed, kinds, login,
        normal_day, request, user,
    };

    #[test]
    fn a_principal_from_a_new_country_is_detected() {
        let mut detectors = after_a_normal_day();
        let traveller = user(3); // Paris, four requests a minute.
        let abroad = at_host(NEW_YORK, 77);
        // The next morning from New York: far, but not faster than a plane.
        let anomalies = feed(
            &mut detectors,
            &[
                request(ATTACK, &traveller.id, abroad, "GET /v1/notes"),
                request(ATTACK + 60, &traveller.id, abroad, "GET /v1/notes"),
                request(ATTACK + 120, &traveller.id, abroad, "GET /v1/notes"),
            ],
        );
        assert_eq!(
            kinds(&anomalies),
            [AnomalyKind::NewCountry],
            "once: then it is known"
        );
        let anomaly = &anomalies[0];
        assert_eq!(anomaly.principal.as_deref(), Some(traveller.id.as_str()));
        assert_eq!(anomaly.client_ip, Some(abroad));
        assert_eq!(anomaly.outcome, Outcome::Allowed);
        assert_eq!(anomaly.kind.detector(), "geography");
    }

    #[test]
    fn paris_then_sydney_ten_minutes_later_is_impossible_travel() {
        let mut detectors = after_a_normal_day();
        let traveller = user(3);
        let sydney = at_host(SYDNEY, 99);
        let anomalies = feed(
            &mut detectors,
            &[
                request(ATTACK, &traveller.id, traveller.ip(), "GET /v1/notes"),
                login(ATTACK + 10 * MINUTE, &traveller.id, sydney),
            ],
        );
        assert_eq!(
            kinds(&anomalies),
            [AnomalyKind::NewCountry, AnomalyKind::ImpossibleTravel]
        );
        assert_eq!(anomalies[1].client_ip, Some(sydney));
        // Back in Paris 10 minutes later: impossible again, but within the cool-down.
        let back = feed(
            &mut detectors,
            &[request(
                ATTACK + 20 * MINUTE,
                &traveller.id,
                traveller.ip(),
                "GET /v1/notes",
            )],
        );
        assert_eq!(back, []);
    }

    #[test]
    fn without_a_geoip_database_geography_is_off() {
        let mut detectors = Detectors::new(AnomalyConfig::default(), None);
        assert!(!detectors.has_geography());
        let traveller = user(3);
        let mut records = normal_day(0);
        records.push(request(
            ATTACK,
            &traveller.id,
            traveller.ip(),
            "GET /v1/notes",
        ));
        records.push(request(
            ATTACK + 60,
            &traveller.id,
            at_host(SYDNEY, 9),
            "GET /v1/notes",
        ));
        assert_eq!(feed(&mut detectors, &records), []);
    }

    #[test]
    fn a_principal_seen_in_every_country_keeps_a_bounded_list() {
        let mut globetrotter = GeoProfile::default();
        for code in 0..676u32 {
            let letters = [b'A' + (code / 26) as u8, b'A' + (code % 26) as u8];
            let country = std::str::from_utf8(&letters).expect("ascii");
            globetrotter.learn_country(CountryCode::parse(country).expect("a code"));
        }
        assert_eq!(globetrotter.countries.len(), MAX_COUNTRIES_PER_PRINCIPAL);
    }
}
