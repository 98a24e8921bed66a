//! The README's configuration block is what users copy: it must say exactly what the defaults are.

use hoptrace_collector::Config;

/// The TOML block that follows "A configuration file" in README.md.
fn readme_config_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = readme.split_once("A configuration file").expect("the README documents the configuration file").1;
    let block = after.split_once("```toml\n").expect("a toml block follows").1;
    block.split_once("```").expect("the block ends").0.to_owned()
}

#[test]
fn the_readme_config_block_is_the_default_config() {
    let block = readme_config_block();
    let from_readme = Config::parse(&block).unwrap_or_else(|e| panic!("the README's block does not parse: {e}"));
    // The block shows the default data directory; the default honours $HOPTRACE_DATA, set here or not.
    let defaults = Config { data_dir: "hoptrace-data".into(), ..Config::default() };
    assert_eq!(from_readme, defaults, "README.md's configuration block differs from Config::default()");
    // Every section of the configuration appears in the block, so none is left undocumented.
    for section in ["[listen]", "[storage]", "[limits]", "[forward]", "[auth]", "[tls]"] {
        assert!(block.contains(section), "the README's block has no {section}");
    }
}
