//! The key model: named special keys and characters, their X11 keysyms (what VNC sends), their
//! QEMU QMP `qcode` names (what `input-send-event` takes), and the US keyboard layout that maps a
//! printable character to a physical key plus Shift.

use std::fmt;
use std::time::Duration;

use super::grammar::Action;

/// A named special key of the `boot_command` grammar (`<enter>`, `<f10>`, `<leftShift>` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialKey {
    /// `<bs>`: Backspace.
    Bs,
    /// `<del>`: Delete.
    Del,
    /// `<enter>`: Return/Enter.
    Enter,
    /// `<esc>`: Escape.
    Esc,
    /// `<f1>`.
    F1,
    /// `<f2>`.
    F2,
    /// `<f3>`.
    F3,
    /// `<f4>`.
    F4,
    /// `<f5>`.
    F5,
    /// `<f6>`.
    F6,
    /// `<f7>`.
    F7,
    /// `<f8>`.
    F8,
    /// `<f9>`.
    F9,
    /// `<f10>`.
    F10,
    /// `<f11>`.
    F11,
    /// `<f12>`.
    F12,
    /// `<return>`: the same key as `<enter>`.
    Return,
    /// `<tab>`.
    Tab,
    /// `<up>`: arrow up.
    Up,
    /// `<down>`: arrow down.
    Down,
    /// `<spacebar>`: the space bar.
    Spacebar,
    /// `<insert>`.
    Insert,
    /// `<home>`.
    Home,
    /// `<end>`.
    End,
    /// `<pageUp>`.
    PageUp,
    /// `<pageDown>`.
    PageDown,
    /// `<leftAlt>`.
    LeftAlt,
    /// `<leftCtrl>`.
    LeftCtrl,
    /// `<leftShift>`.
    LeftShift,
    /// `<rightAlt>`.
    RightAlt,
    /// `<rightCtrl>`.
    RightCtrl,
    /// `<rightShift>`.
    RightShift,
    /// `<leftSuper>`: left "Windows" key.
    LeftSuper,
    /// `<rightSuper>`: right "Windows" key.
    RightSuper,
    /// `<leftCommand>`: sent as left Alt, like Packer's VNC driver.
    LeftCommand,
    /// `<rightCommand>`: sent as right Alt, like Packer's VNC driver.
    RightCommand,
    /// `<leftOption>`: sent as X11 `Meta_L`, like Packer's VNC driver.
    LeftOption,
    /// `<rightOption>`: sent as X11 `Meta_R`, like Packer's VNC driver.
    RightOption,
    /// `<left>`: arrow left.
    Left,
    /// `<right>`: arrow right.
    Right,
    /// `<menu>`: the menu (application) key.
    Menu,
}

impl SpecialKey {
    /// Every special key with its grammar spelling, in the order Packer's PEG grammar tries them
    /// (`f10`–`f12` before `f1`, the `left…`/`right…` modifiers before bare `left`/`right`).
    pub const GRAMMAR_ORDER: [(&'static str, SpecialKey); 41] = [
        ("bs", SpecialKey::Bs),
        ("del", SpecialKey::Del),
        ("enter", SpecialKey::Enter),
        ("esc", SpecialKey::Esc),
        ("f10", SpecialKey::F10),
        ("f11", SpecialKey::F11),
        ("f12", SpecialKey::F12),
        ("f1", SpecialKey::F1),
        ("f2", SpecialKey::F2),
        ("f3", SpecialKey::F3),
        ("f4", SpecialKey::F4),
        ("f5", SpecialKey::F5),
        ("f6", SpecialKey::F6),
        ("f7", SpecialKey::F7),
        ("f8", SpecialKey::F8),
        ("f9", SpecialKey::F9),
        ("return", SpecialKey::Return),
        ("tab", SpecialKey::Tab),
        ("up", SpecialKey::Up),
        ("down", SpecialKey::Down),
        ("spacebar", SpecialKey::Spacebar),
        ("insert", SpecialKey::Insert),
        ("home", SpecialKey::Home),
        ("end", SpecialKey::End),
        ("pageUp", SpecialKey::PageUp),
        ("pageDown", SpecialKey::PageDown),
        ("leftAlt", SpecialKey::LeftAlt),
        ("leftCtrl", SpecialKey::LeftCtrl),
        ("leftShift", SpecialKey::LeftShift),
        ("rightAlt", SpecialKey::RightAlt),
        ("rightCtrl", SpecialKey::RightCtrl),
        ("rightShift", SpecialKey::RightShift),
        ("leftSuper", SpecialKey::LeftSuper),
        ("rightSuper", SpecialKey::RightSuper),
        ("leftCommand", SpecialKey::LeftCommand),
        ("rightCommand", SpecialKey::RightCommand),
        ("leftOption", SpecialKey::LeftOption),
        ("rightOption", SpecialKey::RightOption),
        ("left", SpecialKey::Left),
        ("right", SpecialKey::Right),
        ("menu", SpecialKey::Menu),
    ];

    /// The grammar spelling of the key, as in `<name>` (e.g. `"pageUp"`).
    pub fn name(self) -> &'static str {
        // GRAMMAR_ORDER lists every variant exactly once (checked by a unit test).
        SpecialKey::GRAMMAR_ORDER.iter().find(|(_, k)| *k == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// The X11 keysym Packer's VNC driver sends for this key.
    pub fn keysym(self) -> u32 {
        use SpecialKey::*;
        match self {
            Bs => 0xFF08,
            Del => 0xFFFF,
            Enter | Return => 0xFF0D,
            Esc => 0xFF1B,
            Tab => 0xFF09,
            F1 => 0xFFBE,
            F2 => 0xFFBF,
            F3 => 0xFFC0,
            F4 => 0xFFC1,
            F5 => 0xFFC2,
            F6 => 0xFFC3,
            F7 => 0xFFC4,
            F8 => 0xFFC5,
            F9 => 0xFFC6,
            F10 => 0xFFC7,
            F11 => 0xFFC8,
            F12 => 0xFFC9,
            Up => 0xFF52,
            Down => 0xFF54,
            Left => 0xFF51,
            Right => 0xFF53,
            Home => 0xFF50,
            End => 0xFF57,
            PageUp => 0xFF55,
            PageDown => 0xFF56,
            Insert => 0xFF63,
            Menu => 0xFF67,
            Spacebar => 0x0020,
            LeftShift => 0xFFE1,
            RightShift => 0xFFE2,
            LeftCtrl => 0xFFE3,
            RightCtrl => 0xFFE4,
            LeftAlt | LeftCommand => 0xFFE9,
            RightAlt | RightCommand => 0xFFEA,
            LeftSuper => 0xFFEB,
            RightSuper => 0xFFEC,
            LeftOption => 0xFFE7,
            RightOption => 0xFFE8,
        }
    }

    /// The QEMU QMP `QKeyCode` name of the physical key QEMU's US keymap yields for
    /// [`keysym`](Self::keysym) (so QMP typing and VNC typing press the same keys).
    pub fn qcode(self) -> &'static str {
        use SpecialKey::*;
        match self {
            Bs => "backspace",
            Del => "delete",
            Enter | Return => "ret",
            Esc => "esc",
            Tab => "tab",
            F1 => "f1",
            F2 => "f2",
            F3 => "f3",
            F4 => "f4",
            F5 => "f5",
            F6 => "f6",
            F7 => "f7",
            F8 => "f8",
            F9 => "f9",
            F10 => "f10",
            F11 => "f11",
            F12 => "f12",
            Up => "up",
            Down => "down",
            Left => "left",
            Right => "right",
            Home => "home",
            End => "end",
            PageUp => "pgup",
            PageDown => "pgdn",
            Insert => "insert",
            Menu => "compose",
            Spacebar => "spc",
            LeftShift => "shift",
            RightShift => "shift_r",
            LeftCtrl => "ctrl",
            RightCtrl => "ctrl_r",
            LeftAlt | LeftCommand => "alt",
            RightAlt | RightCommand => "alt_r",
            LeftSuper => "meta_l",
            RightSuper => "meta_r",
            // QEMU's US keymap maps X11 Meta_L/Meta_R (what Packer sends for the Option keys) to Alt.
            LeftOption => "alt",
            RightOption => "alt_r",
        }
    }
}

impl fmt::Display for SpecialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.name())
    }
}

/// A key the boot command acts on: a named special key or a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// A named special key (`<enter>`, `<leftCtrl>` …).
    Special(SpecialKey),
    /// A character typed as itself (Shift is added around it when it needs one).
    Char(char),
}

/// The upper-case letters and these 21 symbols are typed with Shift held (Packer's rule, US layout).
pub const SHIFTED_SYMBOLS: &str = "~!@#$%^&*()_+{}|:\"<>?";

impl Key {
    /// The X11 keysym sent over VNC. Characters up to U+00FF are their code point (Latin-1 keysyms,
    /// what Packer sends); other characters use the X11 Unicode keysym `0x0100_0000 + code point`.
    pub fn keysym(self) -> u32 {
        match self {
            Key::Special(k) => k.keysym(),
            Key::Char(c) if (c as u32) <= 0xFF => c as u32,
            Key::Char(c) => 0x0100_0000 + c as u32,
        }
    }

    /// Whether Shift must be held around the key (upper-case letters and [`SHIFTED_SYMBOLS`]).
    pub fn needs_shift(self) -> bool {
        match self {
            Key::Special(_) => false,
            Key::Char(c) => c.is_uppercase() || SHIFTED_SYMBOLS.contains(c),
        }
    }

    /// The QMP `QKeyCode` name of the physical key on a US keyboard (without Shift: `'A'` and `'a'`
    /// both give `"a"`), or `None` for characters a US keyboard cannot type (control characters
    /// such as `\n`, non-ASCII).
    pub fn qcode(self) -> Option<&'static str> {
        match self {
            Key::Special(k) => Some(k.qcode()),
            Key::Char(c) => us_layout(c).map(|(k, _)| k.qcode()),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Special(k) => k.fmt(f),
            Key::Char(c) => write!(f, "{c:?}"),
        }
    }
}

/// A physical key of a US keyboard that types printable ASCII, named by its unshifted character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsKey(char);

/// Unshifted → shifted characters of the US layout's non-letter keys.
const US_PAIRS: [(char, char, &str); 21] = [
    ('`', '~', "grave_accent"),
    ('1', '!', "1"),
    ('2', '@', "2"),
    ('3', '#', "3"),
    ('4', '$', "4"),
    ('5', '%', "5"),
    ('6', '^', "6"),
    ('7', '&', "7"),
    ('8', '*', "8"),
    ('9', '(', "9"),
    ('0', ')', "0"),
    ('-', '_', "minus"),
    ('=', '+', "equal"),
    ('[', '{', "bracket_left"),
    (']', '}', "bracket_right"),
    ('\\', '|', "backslash"),
    (';', ':', "semicolon"),
    ('\'', '"', "apostrophe"),
    (',', '<', "comma"),
    ('.', '>', "dot"),
    ('/', '?', "slash"),
];

const LETTER_QCODES: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w",
    "x", "y", "z",
];

impl UsKey {
    /// The character the key types without Shift (`'a'`, `'1'`, `'-'`, `' '`).
    pub fn base_char(self) -> char {
        self.0
    }

    /// The character the key types with Shift (`'A'`, `'!'`, `'_'`; the space bar types `' '`).
    pub fn shifted_char(self) -> char {
        let c = self.0;
        if c.is_ascii_lowercase() {
            return c.to_ascii_uppercase();
        }
        US_PAIRS.iter().find(|(b, _, _)| *b == c).map(|(_, s, _)| *s).unwrap_or(c)
    }

    /// The QMP `QKeyCode` name of the key (`"a"`, `"1"`, `"minus"`, `"spc"`).
    pub fn qcode(self) -> &'static str {
        let c = self.0;
        if c.is_ascii_lowercase() {
            return LETTER_QCODES[(c as u8 - b'a') as usize];
        }
        if c == ' ' {
            return "spc";
        }
        US_PAIRS.iter().find(|(b, _, _)| *b == c).map(|(_, _, q)| *q).unwrap_or("spc")
    }

    /// The character this key types, with or without Shift.
    pub fn char_with(self, shift: bool) -> char {
        if shift {
            self.shifted_char()
        } else {
            self.base_char()
        }
    }
}

/// Maps a printable ASCII character (`' '`..=`'~'`) to the US-layout key that types it and
/// whether Shift is needed; `None` for anything else.
pub fn us_layout(c: char) -> Option<(UsKey, bool)> {
    if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ' ' {
        return Some((UsKey(c), false));
    }
    if c.is_ascii_uppercase() {
        return Some((UsKey(c.to_ascii_lowercase()), true));
    }
    for (base, shifted, _) in US_PAIRS {
        if c == base {
            return Some((UsKey(base), false));
        }
        if c == shifted {
            return Some((UsKey(base), true));
        }
    }
    None
}

/// One low-level event for a [`KeyDriver`](super::KeyDriver): a key going down or up, or a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyEvent {
    /// Press the key and keep it pressed.
    Down(Key),
    /// Release the key.
    Up(Key),
    /// Pause (from `<waitN>`).
    Wait(Duration),
}

const SHIFT: Key = Key::Special(SpecialKey::LeftShift);

/// Expands parsed actions into key events, like Packer's VNC driver: a press is down then up;
/// characters that need Shift get left-Shift down before and left-Shift up after (for `<xOn>`,
/// Shift goes down before the key; for `<xOff>`, Shift goes up after the key).
pub fn events(actions: &[Action]) -> Vec<KeyEvent> {
    let mut out = Vec::with_capacity(actions.len() * 2);
    for action in actions {
        match *action {
            Action::Press(k) => {
                let shift = k.needs_shift();
                if shift {
                    out.push(KeyEvent::Down(SHIFT));
                }
                out.push(KeyEvent::Down(k));
                out.push(KeyEvent::Up(k));
                if shift {
                    out.push(KeyEvent::Up(SHIFT));
                }
            }
            Action::Down(k) => {
                if k.needs_shift() {
                    out.push(KeyEvent::Down(SHIFT));
                }
                out.push(KeyEvent::Down(k));
            }
            Action::Up(k) => {
                out.push(KeyEvent::Up(k));
                if k.needs_shift() {
                    out.push(KeyEvent::Up(SHIFT));
                }
            }
            Action::Wait(d) => out.push(KeyEvent::Wait(d)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_order_lists_every_key_once_with_distinct_names() {
        let mut names: Vec<String> = SpecialKey::GRAMMAR_ORDER.iter().map(|(n, _)| n.to_lowercase()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SpecialKey::GRAMMAR_ORDER.len());
        for (name, key) in SpecialKey::GRAMMAR_ORDER {
            assert_eq!(key.name(), name);
        }
    }

    #[test]
    fn us_layout_round_trips_all_printable_ascii() {
        let mut count = 0;
        for b in 0x20u8..=0x7e {
            let c = b as char;
            let (key, shift) = us_layout(c).unwrap_or_else(|| panic!("no key for {c:?}"));
            assert_eq!(key.char_with(shift), c, "round trip of {c:?}");
            assert_eq!(us_layout(key.base_char()), Some((key, false)));
            // Packer's shift rule agrees with the layout for every printable ASCII character.
            assert_eq!(Key::Char(c).needs_shift(), shift, "shift rule for {c:?}");
            assert_eq!(Key::Char(c).qcode(), Some(key.qcode()));
            count += 1;
        }
        assert_eq!(count, 95);
    }

    #[test]
    fn us_layout_rejects_non_printable_and_non_ascii() {
        for c in ['\n', '\t', '\u{7f}', '\0', 'é', 'ß', '€'] {
            assert_eq!(us_layout(c), None, "{c:?}");
            assert_eq!(Key::Char(c).qcode(), None);
        }
    }

    #[test]
    fn qcodes_of_the_47_us_keys_are_distinct() {
        let mut q: Vec<&str> = (0x20u8..=0x7e).map(|b| us_layout(b as char).unwrap().0.qcode()).collect();
        q.sort();
        q.dedup();
        assert_eq!(q.len(), 26 + 21 + 1);
    }

    #[test]
    fn keysyms_of_chars() {
        assert_eq!(Key::Char('a').keysym(), 0x61);
        assert_eq!(Key::Char('A').keysym(), 0x41);
        assert_eq!(Key::Char('é').keysym(), 0xE9);
        assert_eq!(Key::Char('€').keysym(), 0x0100_20AC);
        assert_eq!(Key::Char('\n').keysym(), 0x0A);
    }

    #[test]
    fn events_add_shift_and_split_presses() {
        let ev = events(&[
            Action::Press(Key::Char('a')),
            Action::Press(Key::Char('A')),
            Action::Down(Key::Char('%')),
            Action::Up(Key::Char('%')),
            Action::Press(Key::Special(SpecialKey::Enter)),
            Action::Down(Key::Special(SpecialKey::LeftCtrl)),
            Action::Wait(Duration::from_secs(2)),
        ]);
        let a = Key::Char('a');
        let big_a = Key::Char('A');
        let pct = Key::Char('%');
        let enter = Key::Special(SpecialKey::Enter);
        let ctrl = Key::Special(SpecialKey::LeftCtrl);
        assert_eq!(
            ev,
            vec![
                KeyEvent::Down(a),
                KeyEvent::Up(a),
                KeyEvent::Down(SHIFT),
                KeyEvent::Down(big_a),
                KeyEvent::Up(big_a),
                KeyEvent::Up(SHIFT),
                KeyEvent::Down(SHIFT),
                KeyEvent::Down(pct),
                KeyEvent::Up(pct),
                KeyEvent::Up(SHIFT),
                KeyEvent::Down(enter),
                KeyEvent::Up(enter),
                KeyEvent::Down(ctrl),
                KeyEvent::Wait(Duration::from_secs(2)),
            ]
        );
    }

    #[test]
    fn non_ascii_uppercase_gets_shift_like_packer() {
        assert!(Key::Char('É').needs_shift());
        assert!(!Key::Char('é').needs_shift());
        assert!(!Key::Special(SpecialKey::LeftShift).needs_shift());
    }
}
