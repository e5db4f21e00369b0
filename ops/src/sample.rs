//! Sample petitions for demos, benchmarks and tests: valid resident ID numbers (with their GB
//! 11643 check character), spread over categories and channels.

use federation_proto::v1;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";
/// The categories sample petitions are spread over.
pub const CATEGORIES: [&str; 6] = [
    "land",
    "labour",
    "housing",
    "environment",
    "social-security",
    "law-enforcement",
];
/// The channels sample petitions arrive through.
pub const CHANNELS: [&str; 5] = ["visit", "letter", "phone", "online", "video"];

/// The `n`-th sample ID number: area 530602, a birth date in 1950..=1999, a sequence number.
pub fn id_number(n: u64) -> String {
    let year = 1950 + (n / 1000) % 50;
    let month = 1 + (n / 50_000) % 12;
    let day = 1 + (n / 600_000) % 28;
    let body = format!("530602{year:04}{month:02}{day:02}{:03}", n % 1000);
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    let check = CHECK[(sum % 11) as usize] as char;
    format!("{body}{check}")
}

/// The `n`-th sample registration.
pub fn registration(n: u64) -> v1::Registration {
    let index = usize::try_from(n).unwrap_or(0);
    v1::Registration {
        channel: CHANNELS[index % CHANNELS.len()].to_string(),
        petitioner_id: id_number(n),
        name: format!("Petitioner {n}"),
        phone: Some(format!("1380000{:04}", n % 10_000)),
        category: CATEGORIES[index % CATEGORIES.len()].to_string(),
        summary: format!("Sample petition number {n}: the matter as the petitioner told it."),
        location: None,
        officer: "registrar".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_id_numbers_pass_the_engine_validation() {
        for n in [0, 1, 999, 1_000, 123_456, 9_999_999] {
            let registration = liandong_domain::Registration::try_from(registration(n)).unwrap();
            registration
                .validate()
                .unwrap_or_else(|e| panic!("sample {n}: {e}"));
        }
    }
}
