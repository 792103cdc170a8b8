//! Vocabularies of the synthetic network: real ISO 3166-1 country codes,
//! syllables for city names, and the phrases activities are written with.

/// Real ISO 3166-1 alpha-2 codes, with the countries of many member cities
/// listed more than once so that they weigh more, as in the real network.
pub const COUNTRIES: &[&str] = &[
    "AR", "AT", "AU", "BE", "BJ", "BO", "BR", "BR", "BG", "CA", "CH", "CL", "CN", "CN", "CN", "CO",
    "CO", "CU", "CZ", "DE", "DE", "DK", "DZ", "EC", "EE", "EG", "ES", "ES", "ES", "ET", "FI", "FR",
    "FR", "FR", "GB", "GB", "GH", "GR", "GT", "HK", "HR", "HU", "ID", "ID", "IE", "IL", "IN", "IN",
    "IQ", "IR", "IR", "IS", "IT", "IT", "IT", "JM", "JO", "JP", "JP", "KE", "KG", "KR", "KR", "KZ",
    "LB", "LK", "LT", "LU", "LV", "MA", "MA", "MG", "MN", "MO", "MT", "MU", "MX", "MX", "MY", "MZ",
    "NA", "NG", "NL", "NO", "NP", "NZ", "OM", "PE", "PH", "PK", "PL", "PL", "PS", "PT", "PT", "PY",
    "QA", "RO", "RS", "RU", "RW", "SA", "SE", "SE", "SG", "SI", "SK", "SN", "SV", "SY", "TH", "TH",
    "TN", "TR", "TR", "TW", "TZ", "UA", "UG", "US", "US", "US", "UY", "UZ", "VE", "VN", "ZA", "ZW",
];

/// Opening syllables of city names (some with accents, so folding is exercised).
pub const NAME_START: &[&str] = &[
    "Al", "Ber", "Cal", "Dor", "Es", "Fal", "Gra", "Hel", "Is", "Jal", "Kra", "Lu", "Mon", "Nor",
    "Ost", "Pa", "Qui", "Ros", "San", "Tor", "Ur", "Val", "Wes", "Yor", "Zar", "Bra", "Cór", "Göt",
    "Mé", "Ñu", "São", "Ør", "Ša", "Łó", "Ka", "Ta", "Ma", "Sé", "Ri", "Po",
];

/// Middle syllables of city names.
pub const NAME_MIDDLE: &[&str] = &[
    "", "", "", "a", "e", "i", "o", "u", "an", "el", "ir", "or", "um", "ad", "ta", "ri", "lo",
    "ve", "ma", "ni",
];

/// Closing syllables of city names.
pub const NAME_END: &[&str] = &[
    "bad", "berg", "burg", "dam", "dor", "ford", "gard", "ia", "ina", "ka", "lia", "mond", "na",
    "nes", "polis", "pur", "ra", "rio", "sund", "tan", "ton", "ville", "wick", "zia", "lès",
    "gård", "ópolis", "ova", "ane", "ez",
];

/// Themes, short phrases as cities tag their activities.
pub const THEMES: &[&str] = &[
    "creative tourism",
    "sustainable urban development",
    "cultural heritage",
    "intangible heritage",
    "youth engagement",
    "gender equality",
    "climate action",
    "digital transformation",
    "creative economy",
    "inclusive cities",
    "education",
    "public space",
    "food security",
    "indigenous knowledge",
    "artisanal skills",
    "circular economy",
    "cultural diplomacy",
    "urban regeneration",
    "community resilience",
    "accessibility",
    "literacy",
    "translation",
    "festivals",
    "live music",
    "film heritage",
    "animation",
    "new media",
    "architecture and landscape",
    "design thinking",
    "social innovation",
    "cross-cutting cooperation",
    "capacity building",
    "south-south cooperation",
    "migration and diversity",
    "local products",
    "street food",
    "biodiversity",
    "water",
    "wellbeing",
    "smart cities",
    "artificial intelligence",
    "copyright and creators' rights",
    "cinema education",
    "children's literature",
    "poetry",
    "jazz",
    "traditional crafts",
    "textiles",
    "ceramics",
    "culinary traditions",
];

/// Topics that titles are about.
pub const TOPICS: &[&str] = &[
    "Creative Tourism",
    "Sustainable Urban Development",
    "Cultural Heritage and Innovation",
    "Youth and Creativity",
    "Culture for Climate Action",
    "Creative Economy",
    "Digital Creativity",
    "Inclusive Public Spaces",
    "Food and Sustainability",
    "Literature and Translation",
    "Music and Social Cohesion",
    "Film and Education",
    "Design for Resilience",
    "Crafts and Livelihoods",
    "Media Arts and Technology",
    "Architecture and the City",
    "Women in Creative Industries",
    "Culture and the 2030 Agenda",
    "Creativity and Wellbeing",
    "Urban Regeneration",
];

/// Openings of titles, by activity kind (indexes follow `ActivityKind::ALL`).
pub const TITLE_OPENINGS: &[&[&str]] = &[
    &["Annual Meeting of the Network", "UCCN Annual Conference"],
    &[
        "International Conference on",
        "International Forum on",
        "Global Summit on",
    ],
    &["Online Member Meeting on", "Member Meeting:", "Webinar on"],
    &[
        "Sub-Network Collaboration on",
        "Joint Programme on",
        "Cluster Project on",
    ],
    &["Workshop on", "Masterclass on", "Training Lab on"],
    &["Exhibition:", "Showcase of", "Exhibition on"],
    &["Festival of", "Festival:", "Celebration of"],
    &["Residency on", "Artist Residency:", "Writers' Residency on"],
    &["Meeting on", "Initiative on", "Dialogue on"],
];

/// Sentences of summaries; `{city}` and `{topic}` are filled in.
pub const SUMMARY_SENTENCES: &[&str] = &[
    "{city} brings together member cities to exchange practices on {topic}.",
    "Creative professionals, city officials and researchers meet in {city} to discuss {topic}.",
    "The programme highlights how {topic} contributes to sustainable urban development.",
    "Participants share experiences and plan joint projects on {topic}.",
    "Hosted by {city}, the event strengthens cooperation among creative cities.",
    "Young creators from across the network present their work on {topic}.",
    "The meeting reviews progress and sets priorities for the coming years.",
    "Local artisans, chefs, musicians and designers take part alongside city delegations.",
];

/// Paragraphs of descriptions; `{city}` and `{topic}` are filled in.
pub const DESCRIPTION_PARAGRAPHS: &[&str] = &[
    "The Creative Cities Network was created in 2004 to promote cooperation with and among cities that have identified creativity as a strategic factor for sustainable urban development. This activity, led by {city}, focuses on {topic}.",
    "Over several days, delegations from member cities take part in plenary sessions, thematic workshops and field visits. Discussions address the role of culture and creativity in making cities safer, more resilient, inclusive and sustainable.",
    "The programme includes panel discussions with mayors and city representatives, presentations of good practices, and working sessions of the creative fields' sub-networks: crafts and folk art, design, film, gastronomy, literature, media arts, music and architecture.",
    "Outcomes are shared with the whole network through a communiqué and a report, so that cities which could not attend can build on the results and join follow-up projects.",
    "Special attention is given to youth, gender equality and the participation of local communities, in line with the network's mission statement and the 2030 Agenda for Sustainable Development.",
    "Side events open to the public include exhibitions, concerts, film screenings, tastings and readings across {city}, showcasing the city's creative scene and its partners.",
    "The activity builds on previous editions and on cooperation agreements between participating cities, and prepares contributions to the next annual conference of the network.",
];

/// Objectives activities state.
pub const OBJECTIVES: &[&str] = &[
    "Strengthen international cooperation among member cities",
    "Share good practices and lessons learned",
    "Develop joint projects across creative fields",
    "Involve young creators and local communities",
    "Promote creativity as a driver of sustainable development",
    "Raise awareness of intangible cultural heritage",
    "Support creative entrepreneurs and small businesses",
    "Improve access to culture for all",
];

/// Organizations that are not member cities.
pub const ORGANIZATIONS: &[&str] = &[
    "UNESCO",
    "UN-Habitat",
    "ICCROM",
    "World Bank",
    "Ministry of Culture",
    "National Commission for UNESCO",
    "Creative Europe",
    "Local chamber of commerce",
    "University partners",
];

/// Editors of publications.
pub const EDITORS: &[&str] = &[
    "A. Moreau",
    "K. Tanaka",
    "L. Okafor",
    "M. García",
    "S. Lindqvist",
    "R. Haddad",
    "J. Kowalski",
    "P. Nguyen",
];

/// Words the search scenario rotates through: common and rare words of the
/// texts above, and a few two-word queries.
pub const SEARCH_QUERIES: &[&str] = &[
    "tourism",
    "heritage",
    "youth",
    "gastronomy",
    "design",
    "literature",
    "festival",
    "residency",
    "climate",
    "sustainable development",
    "creative economy",
    "poetry",
    "ceramics",
    "jazz",
    "animation",
    "translation",
    "street food",
    "biodiversity",
    "regeneration",
    "webinar",
    "masterclass",
    "exhibition",
    "communiqué",
    "artisans",
];
