//! The 64 SAS emoji of the Matrix spec ("SAS method: emoji"), with the
//! English names the spec gives them; apps may translate the names with the
//! spec's translation table, but the index and the emoji are what both
//! sides must agree on.

/// One emoji of a short authentication string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SasEmoji {
    /// Its number in the spec's table (0–63).
    pub index: u8,
    /// The emoji itself.
    pub symbol: &'static str,
    /// Its English name from the spec.
    pub description: &'static str,
}

const TABLE: [(&str, &str); 64] = [
    ("🐶", "Dog"),
    ("🐱", "Cat"),
    ("🦁", "Lion"),
    ("🐎", "Horse"),
    ("🦄", "Unicorn"),
    ("🐷", "Pig"),
    ("🐘", "Elephant"),
    ("🐰", "Rabbit"),
    ("🐼", "Panda"),
    ("🐓", "Rooster"),
    ("🐧", "Penguin"),
    ("🐢", "Turtle"),
    ("🐟", "Fish"),
    ("🐙", "Octopus"),
    ("🦋", "Butterfly"),
    ("🌷", "Flower"),
    ("🌳", "Tree"),
    ("🌵", "Cactus"),
    ("🍄", "Mushroom"),
    ("🌏", "Globe"),
    ("🌙", "Moon"),
    ("☁️", "Cloud"),
    ("🔥", "Fire"),
    ("🍌", "Banana"),
    ("🍎", "Apple"),
    ("🍓", "Strawberry"),
    ("🌽", "Corn"),
    ("🍕", "Pizza"),
    ("🎂", "Cake"),
    ("❤️", "Heart"),
    ("😀", "Smiley"),
    ("🤖", "Robot"),
    ("🎩", "Hat"),
    ("👓", "Glasses"),
    ("🔧", "Spanner"),
    ("🎅", "Santa"),
    ("👍", "Thumbs Up"),
    ("☂️", "Umbrella"),
    ("⌛", "Hourglass"),
    ("⏰", "Clock"),
    ("🎁", "Gift"),
    ("💡", "Light Bulb"),
    ("📕", "Book"),
    ("✏️", "Pencil"),
    ("📎", "Paperclip"),
    ("✂️", "Scissors"),
    ("🔒", "Lock"),
    ("🔑", "Key"),
    ("🔨", "Hammer"),
    ("☎️", "Telephone"),
    ("🏁", "Flag"),
    ("🚂", "Train"),
    ("🚲", "Bicycle"),
    ("✈️", "Aeroplane"),
    ("🚀", "Rocket"),
    ("🏆", "Trophy"),
    ("⚽", "Ball"),
    ("🎸", "Guitar"),
    ("🎺", "Trumpet"),
    ("🔔", "Bell"),
    ("⚓", "Anchor"),
    ("🎧", "Headphones"),
    ("📁", "Folder"),
    ("📌", "Pin"),
];

impl SasEmoji {
    /// The emoji with this index in the spec's table; None beyond 63.
    pub fn from_index(index: u8) -> Option<Self> {
        (index < 64).then(|| emoji(index))
    }
}

/// The emoji with this index (the low six bits count).
pub(crate) fn emoji(index: u8) -> SasEmoji {
    let index = index & 63;
    let (symbol, description) = TABLE[usize::from(index)];
    SasEmoji {
        index,
        symbol,
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_sixty_four_distinct_emoji() {
        let symbols: std::collections::BTreeSet<_> = TABLE.iter().map(|(s, _)| *s).collect();
        assert_eq!(symbols.len(), 64);
        assert_eq!(emoji(0).description, "Dog");
        assert_eq!(emoji(63).symbol, "📌");
        assert_eq!(emoji(64 + 5).index, 5);
    }
}
