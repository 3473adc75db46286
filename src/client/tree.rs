//! Trees drawn with box characters, as `zed permission expand` and
//! `--explain` print them: each node a label, children indented under it.

/// A node to draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub label: String,
    pub children: Vec<Node>,
}

impl Node {
    /// A node with no children yet.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            children: Vec::new(),
        }
    }

    /// The tree as lines: the root, then each child behind `├── ` or
    /// `└── `, deeper levels behind `│   ` or four spaces.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.label);
        out.push('\n');
        self.render_children("", &mut out);
        out
    }

    fn render_children(&self, prefix: &str, out: &mut String) {
        for (i, child) in self.children.iter().enumerate() {
            let last = i + 1 == self.children.len();
            out.push_str(prefix);
            out.push_str(if last { "└── " } else { "├── " });
            out.push_str(&child.label);
            out.push('\n');
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            child.render_children(&deeper, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_drawn_under_their_parent() {
        let mut root = Node::new("document:1->view");
        let mut union = Node::new("union");
        let mut viewer = Node::new("document:1->viewer");
        viewer.children.push(Node::new("user:alice"));
        union.children.push(viewer);
        union.children.push(Node::new("document:1->owner"));
        root.children.push(union);
        assert_eq!(
            root.render(),
            "document:1->view\n\
             └── union\n    \
                 ├── document:1->viewer\n    \
                 │   └── user:alice\n    \
                 └── document:1->owner\n"
        );
    }
}
