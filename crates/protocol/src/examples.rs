//! Example prompts, one per corpus domain, written for Switchyard (not taken from the corpus).

/// An example prompt: its domain label (as in the corpus) and text.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Corpus domain it stands for.
    pub domain: &'static str,
    /// Button label.
    pub label: &'static str,
    /// The prompt.
    pub text: &'static str,
}

/// One example per domain.
pub const EXAMPLES: &[Example] = &[
    Example {
        domain: "code_rust",
        label: "Rust",
        text: "fn mean(xs: &[f64]) -> Option<f64> {\n    if xs.is_empty() {\n        return None;\n    }\n    Some(xs.iter().sum::<f64>() / xs.len() as f64)\n}",
    },
    Example {
        domain: "code_python",
        label: "Python",
        text: "def count_words(path):\n    counts = {}\n    with open(path) as f:\n        for line in f:\n            for word in line.split():\n                counts[word] = counts.get(word, 0) + 1\n    return counts",
    },
    Example {
        domain: "code_javascript",
        label: "JavaScript",
        text: "const total = items\n  .filter((item) => item.price > 0)\n  .map((item) => item.price * item.quantity)\n  .reduce((a, b) => a + b, 0);\nconsole.log(`total: ${total}`);",
    },
    Example {
        domain: "code_c",
        label: "C",
        text: "#include <stdio.h>\n\nint main(void) {\n    int sum = 0;\n    for (int i = 1; i <= 10; i++) {\n        sum += i * i;\n    }\n    printf(\"%d\\n\", sum);\n    return 0;\n}",
    },
    Example {
        domain: "en_prose",
        label: "English",
        text: "The rain had stopped by the time we reached the station, and the platform was empty except for an old man feeding the pigeons.",
    },
    Example {
        domain: "en_verse",
        label: "Verse",
        text: "The lamps are lit along the quay,\nThe tide comes slowly in;\nAnd every ship that sails tonight\nShall carry home a song.",
    },
    Example {
        domain: "fr_prose",
        label: "Français",
        text: "Le matin, la ville était encore silencieuse. Elle prit son café près de la fenêtre et regarda les nuages passer au-dessus des toits.",
    },
    Example {
        domain: "de_prose",
        label: "Deutsch",
        text: "Am Abend gingen wir durch den stillen Wald zurück ins Dorf, wo die Fenster schon hell erleuchtet waren.",
    },
    Example {
        domain: "markup_html",
        label: "HTML",
        text: "<ul class=\"menu\">\n  <li><a href=\"/\">Home</a></li>\n  <li><a href=\"/about\">About us</a></li>\n</ul>",
    },
    Example {
        domain: "markup_markdown",
        label: "Markdown",
        text: "## Installation\n\n1. Download the archive.\n2. Run `make install`.\n\nSee the [manual](docs/manual.md) for **more** details.",
    },
    Example {
        domain: "markup_json",
        label: "JSON",
        text: "{\"name\": \"switchyard\", \"version\": \"0.1.0\", \"tags\": [\"moe\", \"routing\"], \"stars\": 42, \"public\": true}",
    },
    Example {
        domain: "numbers",
        label: "Arithmetic",
        text: "12 + 30 = 42\n7 * 8 = 56\n144 / 12 = 12\n99 - 17 = 82\n15 * 15 =",
    },
];
