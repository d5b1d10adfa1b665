//! [`Currency`]: an active ISO 4217 alphabetic code.
//!
//! Why a type: a currency code is the one piece of an amount's meaning that is not in the
//! number, and typos (`EUR ` or `eur` or `EUO`) would otherwise travel all the way to
//! accounting. Only codes on ISO 4217 *List One* (current currencies and funds) are accepted;
//! the list is embedded below. Parsing is strict: exactly three uppercase ASCII letters, no
//! case folding or trimming — normalizing is the edge's job, and silently accepting `eur`
//! would make two spellings of one order.
//!
//! Amounts always carry two decimal places in this contract (see [`Money`](crate::Money)),
//! whatever the currency's minor unit (JPY has none, BHD three); that is a property of the
//! contract, not of the currency.

use std::fmt;

use crate::error::{DomainError, Violation};

/// ISO 4217 List One (current currency and funds codes), sorted, as published in 2025:
/// includes `XCG` (Caribbean guilder) and `ZWG` (Zimbabwe Gold); excludes the withdrawn `ANG`,
/// `SLL`, `ZWL`, `HRK` and `CUC`.
const ACTIVE_CODES: [&str; 177] = [
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
    "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR",
    "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP",
    "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
    "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH",
    "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF",
    "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF", "XPT",
    "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
];

/// An active ISO 4217 alphabetic currency code such as `EUR`.
///
/// JSON: the code as a string, parsed by [`Currency::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(&'static str);

impl Currency {
    /// The contract's name of this field, used in error messages.
    pub const FIELD: &'static str = "currency";

    /// Parses a code: exactly three uppercase ASCII letters that are an active ISO 4217 code.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::new(Self::FIELD, Violation::Empty));
        }
        match ACTIVE_CODES.binary_search(&raw) {
            Ok(i) => Ok(Currency(ACTIVE_CODES[i])),
            Err(_) => Err(DomainError::new(
                Self::FIELD,
                Violation::UnknownCurrency(raw.to_owned()),
            )),
        }
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0
    }

    /// All accepted codes, sorted.
    pub fn all() -> impl Iterator<Item = Currency> {
        ACTIVE_CODES.iter().map(|c| Currency(c))
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(raw: String) -> Result<Self, DomainError> {
        Currency::parse(&raw)
    }
}

impl TryFrom<&str> for Currency {
    type Error = DomainError;
    fn try_from(raw: &str) -> Result<Self, DomainError> {
        Currency::parse(raw)
    }
}

impl std::str::FromStr for Currency {
    type Err = DomainError;
    fn from_str(raw: &str) -> Result<Self, DomainError> {
        Currency::parse(raw)
    }
}

impl From<Currency> for &'static str {
    fn from(c: Currency) -> &'static str {
        c.0
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_list_is_sorted_unique_and_three_uppercase_letters() {
        assert!(ACTIVE_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(ACTIVE_CODES
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn common_currencies_are_accepted() {
        for code in [
            "EUR", "USD", "GBP", "JPY", "CHF", "SEK", "XCG", "ZWG", "SLE",
        ] {
            assert_eq!(Currency::parse(code).unwrap().code(), code);
        }
    }

    #[test]
    fn lowercase_padded_and_made_up_codes_are_rejected() {
        for raw in [
            "eur", "Eur", " EUR", "EUR ", "EU", "EURO", "ABC", "E1R", "€",
        ] {
            let err = Currency::parse(raw).unwrap_err();
            assert_eq!(err.errors()[0].field, "currency");
            assert_eq!(
                err.errors()[0].violation,
                Violation::UnknownCurrency(raw.into()),
                "{raw:?}"
            );
        }
        assert_eq!(
            Currency::parse("").unwrap_err().errors()[0].violation,
            Violation::Empty
        );
    }

    #[test]
    fn withdrawn_codes_are_rejected() {
        for raw in ["ANG", "HRK", "CUC", "ZWL", "SLL", "DEM", "FRF", "VEF"] {
            assert!(Currency::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn json_codes_go_through_the_same_parse() {
        let c: Currency = serde_json::from_str("\"EUR\"").unwrap();
        assert_eq!(c.code(), "EUR");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"EUR\"");
        assert!(serde_json::from_str::<Currency>("\"eur\"").is_err());
    }

    #[test]
    fn every_listed_code_parses_to_itself() {
        assert_eq!(Currency::all().count(), 177);
        assert!(Currency::all().all(|c| Currency::parse(c.code()) == Ok(c)));
    }
}
