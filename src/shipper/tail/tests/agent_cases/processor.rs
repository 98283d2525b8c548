//! The cases of the Agent's `pkg/logs/processor/processor_test.go`.

use super::*;

/// processor_test.go: TestExclusion, TestInclusion.
#[test]
fn exclusion_and_inclusion_as_the_agent_applies_them() {
    check(vec![
        case(
            "TestExclusion/0",
            vec![exclude("world")],
            "hello\n",
            &["hello"],
        )
        .counts(&[("exclude", 0)]),
        case("TestExclusion/1", vec![exclude("world")], "world\n", &[]).counts(&[("exclude", 1)]),
        case(
            "TestExclusion/2",
            vec![exclude("world")],
            "a brand new world\n",
            &[],
        )
        .counts(&[("exclude", 1)]),
        case(
            "TestExclusion/3",
            vec![exclude("$world")],
            "a brand new world\n",
            &["a brand new world"],
        )
        .counts(&[("exclude", 0)]),
        // TestInclusion: the include rule is the processor's (global); the last case adds
        // the source's own `^world`.
        case("TestInclusion/0", vec![], "hello\n", &[])
            .global(vec![include("world")])
            .counts(&[("include", 0)]),
        case("TestInclusion/1", vec![], "world\n", &["world"])
            .global(vec![include("world")])
            .counts(&[("include", 1)]),
        case(
            "TestInclusion/2",
            vec![],
            "a brand new world\n",
            &["a brand new world"],
        )
        .global(vec![include("world")])
        .counts(&[("include", 1)]),
        case(
            "TestInclusion/3",
            vec![rule(RuleKind::IncludeAtMatch, "source", "^world", "")],
            "a brand new world\n",
            &[],
        )
        .global(vec![include("world")])
        .counts(&[("include", 1), ("source", 0)]),
    ]);
}

/// processor_test.go: TestExclusionWithInclusion (the processor's exclude ^bob, the
/// source's include).
#[test]
fn exclusion_with_inclusion_as_the_agent_applies_them() {
    let email = || vec![include(".*@datadoghq.com$")];
    let bob = || vec![exclude("^bob")];
    check(vec![
        case(
            "TestExclusionWithInclusion/0",
            email(),
            "bob@datadoghq.com\n",
            &[],
        )
        .global(bob())
        .counts(&[("exclude", 1), ("include", 0)]),
        case(
            "TestExclusionWithInclusion/1",
            email(),
            "bill@datadoghq.com\n",
            &["bill@datadoghq.com"],
        )
        .global(bob())
        .counts(&[("exclude", 0), ("include", 1)]),
        case(
            "TestExclusionWithInclusion/2",
            email(),
            "bob@amail.com\n",
            &[],
        )
        .global(bob())
        .counts(&[("exclude", 1), ("include", 0)]),
        case(
            "TestExclusionWithInclusion/3",
            email(),
            "bill@amail.com\n",
            &[],
        )
        .global(bob())
        .counts(&[("exclude", 0), ("include", 0)]),
    ]);
}

/// processor_test.go: TestMask.
#[test]
fn masks_as_the_agent_applies_them() {
    let card = "(?:4[0-9]{12}(?:[0-9]{3})?|[25][1-7][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\\d{3})\\d{11})";
    let values = || vec![mask(r"([Dd]ata_?values=)\S+", "${1}[masked_value]")];
    check(vec![
        case(
            "TestMask/0",
            vec![mask("world", "[masked_world]")],
            "hello\n",
            &["hello"],
        )
        .counts(&[("mask", 0)]),
        case(
            "TestMask/1",
            vec![mask("world", "[masked_world]")],
            "hello world!\n",
            &["hello [masked_world]!"],
        )
        .counts(&[("mask", 1)]),
        case(
            "TestMask/2",
            vec![mask("User=\\w+@datadoghq.com", "[masked_user]")],
            "new test launched by User=beats@datadoghq.com on localhost\n",
            &["new test launched by [masked_user] on localhost"],
        )
        .counts(&[("mask", 1)]),
        case(
            "TestMask/3",
            vec![mask(card, "[masked_credit_card]")],
            "The credit card 4323124312341234 was used to buy some time\n",
            &["The credit card [masked_credit_card] was used to buy some time"],
        )
        .counts(&[("mask", 1)]),
        case(
            "TestMask/4",
            values(),
            "New data added to Datavalues=123456 on prod\n",
            &["New data added to Datavalues=[masked_value] on prod"],
        )
        .counts(&[("mask", 1)]),
        case(
            "TestMask/5",
            values(),
            "New data added to data_values=123456 on prod\n",
            &["New data added to data_values=[masked_value] on prod"],
        )
        .counts(&[("mask", 1)]),
        case(
            "TestMask/6",
            values(),
            "New data added to data_values= on prod\n",
            &["New data added to data_values= on prod"],
        )
        .counts(&[("mask", 0)]),
    ]);
}

/// processor_test.go: TestTruncate, TestExcludeTruncated.
#[test]
fn truncated_lines_as_the_agent_handles_them() {
    let cut = || vec![rule(RuleKind::ExcludeTruncated, "trunc", "", "")];
    let long = format!("{}\nshort\n", "x".repeat(150));
    check(vec![
        case("TestTruncate", vec![], "hello\n", &["hello"]),
        case("TestExcludeTruncated/0", cut(), "hello\n", &["hello"])
            .max_line(100)
            .counts(&[("trunc", 0)]),
        // A line cut in two pieces: both are truncated messages, both are dropped.
        case("TestExcludeTruncated/1", cut(), &long, &["short"])
            .max_line(100)
            .counts(&[("trunc", 2)]),
    ]);
}
