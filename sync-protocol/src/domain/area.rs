//! [`AreaPath`] and [`AreaLevel`]: where a user or a document sits in the area tree.
//!
//! The area tree runs district → street → community → compound → grid → building (cities differ
//! at the top, and a city name often leads the path). Every document belongs to one node, and a
//! user bound to a node sees that node's subtree. Nodes are named by materialized paths such as
//! `/jining/rencheng/street-3/community-2/compound-1/grid-4/building-7`, so "is this document
//! in my subtree" is a prefix test on strings, which a database index answers too.
//!
//! This module parses and compares paths. It must not know which nodes exist or what level a node
//! is: that is the area tree the administrator keeps, stored by the server. A path's depth says
//! nothing about its level, because some cities have a district level and others do not.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The most segments a path may have.
pub const MAX_DEPTH: usize = 8;

/// The longest path, in bytes.
pub const MAX_LEN: usize = 512;

/// A node of the area tree, as a materialized path: `/` followed by segments joined with `/`.
///
/// Segments are non-empty and use `a-z`, `0-9`, `-`, and non-ASCII letters (so `/济宁/任城` is
/// a path too). There is no trailing `/` and no root path `/`: every user and every document is
/// bound to a named node, and the server, which sees everything, is not a user of the tree.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaPath(String);

/// Why a string is not an area path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AreaPathError {
    /// The string is empty, or just `/`.
    #[error("area path names no area (it is empty)")]
    Empty,
    /// The path is longer than [`MAX_LEN`] bytes.
    #[error("area path is {len} bytes long, at most {MAX_LEN} are allowed")]
    TooLong { len: usize },
    /// The path does not start with `/`.
    #[error("area path must start with `/`")]
    NoLeadingSlash,
    /// The path ends with `/`.
    #[error("area path must not end with `/`")]
    TrailingSlash,
    /// Two slashes in a row. `position` counts segments from 1.
    #[error("area path has an empty segment at position {position}")]
    EmptySegment { position: usize },
    /// A segment has a character outside the allowed set. `position` counts segments from 1.
    #[error(
        "area path segment {position} has the character {character:?}; only a-z, 0-9, `-` and \
         non-ASCII letters are allowed"
    )]
    BadCharacter { position: usize, character: char },
    /// More than [`MAX_DEPTH`] segments.
    #[error("area path has {depth} segments, at most {MAX_DEPTH} are allowed")]
    TooDeep { depth: usize },
}

/// Whether `c` may appear in a segment.
///
/// Uppercase ASCII is refused so that one node cannot be spelled two ways (`Grid-4`, `grid-4`)
/// and slip past the prefix test; non-ASCII letters are allowed because admins name areas in
/// Chinese.
fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!c.is_ascii() && c.is_alphabetic())
}

fn validate(s: &str) -> Result<(), AreaPathError> {
    if s.is_empty() || s == "/" {
        return Err(AreaPathError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(AreaPathError::TooLong { len: s.len() });
    }
    let Some(rest) = s.strip_prefix('/') else {
        return Err(AreaPathError::NoLeadingSlash);
    };
    if rest.ends_with('/') {
        return Err(AreaPathError::TrailingSlash);
    }
    let mut depth = 0;
    for (index, segment) in rest.split('/').enumerate() {
        let position = index + 1;
        if segment.is_empty() {
            return Err(AreaPathError::EmptySegment { position });
        }
        if let Some(character) = segment.chars().find(|c| !allowed(*c)) {
            return Err(AreaPathError::BadCharacter {
                position,
                character,
            });
        }
        depth = position;
    }
    if depth > MAX_DEPTH {
        return Err(AreaPathError::TooDeep { depth });
    }
    Ok(())
}

impl AreaPath {
    /// Checks `path` and wraps it.
    pub fn new(path: impl Into<String>) -> Result<Self, AreaPathError> {
        let path = path.into();
        validate(&path)?;
        Ok(Self(path))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, from the top of the tree down.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    /// The number of segments: 1 for a top-level node.
    pub fn depth(&self) -> usize {
        self.segments().count()
    }

    /// The node above this one, or `None` for a top-level node.
    pub fn parent(&self) -> Option<AreaPath> {
        let cut = self.0.rfind('/')?;
        (cut > 0).then(|| AreaPath(self.0[..cut].to_owned()))
    }

    /// The node named `segment` directly below this one.
    pub fn child(&self, segment: &str) -> Result<AreaPath, AreaPathError> {
        // A slash would make two levels out of one name; refuse it rather than descend twice.
        if segment.contains('/') {
            return Err(AreaPathError::BadCharacter {
                position: self.depth() + 1,
                character: '/',
            });
        }
        AreaPath::new(format!("{}/{segment}", self.0))
    }

    /// Whether `other` is this node or lies below it.
    ///
    /// This is a prefix test that respects segment boundaries: `/a/b` contains `/a/b/c` but not
    /// `/a/bc`, which a bare `starts_with` would get wrong.
    pub fn contains(&self, other: &AreaPath) -> bool {
        match other.0.strip_prefix(self.0.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl FromStr for AreaPath {
    type Err = AreaPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for AreaPath {
    type Error = AreaPathError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<AreaPath> for String {
    fn from(path: AreaPath) -> Self {
        path.0
    }
}

impl fmt::Display for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AreaPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AreaPath({:?})", self.0)
    }
}

wire_enum! {
    /// The level of a node in the area tree, from the top down.
    ///
    /// Levels are kept by the area tree next to each node; they are not derived from a path.
    pub enum AreaLevel / AreaLevelError ("area level") {
        /// 区/县: a district or county, in cities large enough to have them.
        District = "district",
        /// 街道: a street office.
        Street = "street",
        /// 社区: a community.
        Community = "community",
        /// 小区: a residential compound.
        Compound = "compound",
        /// 网格: a grid, the patch one grid worker owns.
        Grid = "grid",
        /// 楼栋: a building.
        Building = "building",
    }
}

impl AreaLevel {
    /// The level directly below this one, or `None` for a building (below a building come
    /// households, which are documents, not areas).
    pub fn below(self) -> Option<AreaLevel> {
        let index = Self::ALL.iter().position(|level| *level == self)?;
        Self::ALL.get(index + 1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> AreaPath {
        s.parse().unwrap()
    }

    #[test]
    fn parses_a_full_path_and_prints_it_back() {
        let s = "/jining/rencheng/street-3/community-2/compound-1/grid-4/building-7";
        let area = path(s);
        assert_eq!(area.to_string(), s);
        assert_eq!(area.depth(), 7);
        assert_eq!(area.segments().last(), Some("building-7"));
        assert!("/济宁/任城区/街道-3".parse::<AreaPath>().is_ok());
    }

    #[test]
    fn refuses_malformed_paths() {
        assert_eq!("".parse::<AreaPath>(), Err(AreaPathError::Empty));
        assert_eq!("/".parse::<AreaPath>(), Err(AreaPathError::Empty));
        assert_eq!(
            "a/b".parse::<AreaPath>(),
            Err(AreaPathError::NoLeadingSlash)
        );
        assert_eq!(
            "/a/b/".parse::<AreaPath>(),
            Err(AreaPathError::TrailingSlash)
        );
        assert_eq!(
            "/a//b".parse::<AreaPath>(),
            Err(AreaPathError::EmptySegment { position: 2 })
        );
        assert_eq!(
            "/a/Grid-4".parse::<AreaPath>(),
            Err(AreaPathError::BadCharacter {
                position: 2,
                character: 'G'
            })
        );
        assert_eq!(
            "/a/b c".parse::<AreaPath>(),
            Err(AreaPathError::BadCharacter {
                position: 2,
                character: ' '
            })
        );
        // A full-width digit is not a letter, and not ASCII: refused.
        assert!(matches!(
            "/a/１".parse::<AreaPath>(),
            Err(AreaPathError::BadCharacter { .. })
        ));
    }

    #[test]
    fn limits_depth_and_length() {
        assert_eq!(path("/1/2/3/4/5/6/7/8").depth(), MAX_DEPTH);
        assert_eq!(
            "/1/2/3/4/5/6/7/8/9".parse::<AreaPath>(),
            Err(AreaPathError::TooDeep { depth: 9 })
        );
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(
            long.parse::<AreaPath>(),
            Err(AreaPathError::TooLong { len: MAX_LEN + 1 })
        );
        assert!(
            format!("/{}", "a".repeat(MAX_LEN - 1))
                .parse::<AreaPath>()
                .is_ok()
        );
    }

    #[test]
    fn contains_respects_segment_boundaries() {
        let street = path("/a/b");
        assert!(street.contains(&street));
        assert!(street.contains(&path("/a/b/c")));
        assert!(street.contains(&path("/a/b/c/d")));
        assert!(!street.contains(&path("/a/bc")));
        assert!(!street.contains(&path("/a")));
        assert!(!street.contains(&path("/a/c")));
        assert!(!path("/a/b/c").contains(&street));
    }

    #[test]
    fn parent_and_child_walk_the_tree() {
        let grid = path("/a/b/grid-4");
        assert_eq!(grid.parent(), Some(path("/a/b")));
        assert_eq!(path("/a").parent(), None);
        assert_eq!(
            grid.child("building-7").unwrap(),
            path("/a/b/grid-4/building-7")
        );
        assert!(grid.child("x/y").is_err());
        assert!(grid.child("").is_err());
    }

    #[test]
    fn serde_goes_through_validation() {
        let area: AreaPath = serde_json::from_str("\"/a/b\"").unwrap();
        assert_eq!(area, path("/a/b"));
        assert_eq!(serde_json::to_string(&area).unwrap(), "\"/a/b\"");
        assert!(serde_json::from_str::<AreaPath>("\"/a/B\"").is_err());
    }

    #[test]
    fn area_levels_have_wire_names_and_an_order() {
        for level in AreaLevel::ALL {
            assert_eq!(level.to_string().parse::<AreaLevel>(), Ok(*level));
        }
        assert_eq!("grid".parse(), Ok(AreaLevel::Grid));
        let error = "city".parse::<AreaLevel>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`city` is not a known area level; expected one of: district, street, community, \
             compound, grid, building"
        );
        assert_eq!(AreaLevel::Street.below(), Some(AreaLevel::Community));
        assert_eq!(AreaLevel::Building.below(), None);
    }
}
