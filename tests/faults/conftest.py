"""The fault catalogue counts its cases by outcome; docs/faults.md shows the counts and
``test_catalogue.py`` checks that they are today's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

#: The outcome each test of the catalogue asserts, by test function.
OUTCOMES = {
    "test_bad_profile_value_is_refused_before_work": "clear error before any work",
    "test_bad_run_option_is_refused_before_work": "clear error before any work",
    "test_an_output_path_that_is_a_file_is_refused": "clear error before any work",
    "test_resume_with_other_settings_is_refused_and_nothing_changes": "clear error before any work",
    "test_resume_with_another_env_or_protocol_is_refused": "clear error before any work",
    "test_a_finished_folder_is_not_overwritten_without_overwrite": "clear error before any work",
    "test_a_second_writer_is_refused_naming_the_holder": "clear error before any work",
    "test_a_mistyped_data_root_creates_nothing": "clear error before any work",
    "test_aggregate_refuses_an_input_as_output_and_mixed_settings": "clear error before any work",
    "test_api_refuses_values_that_only_look_right": "clear error before any work",
    "test_an_empty_meta_batch_is_refused_by_both_backends": "clear error before any work",
    "test_a_learner_file_loads_only_into_a_learner_built_alike": "clear error before any work",
    "test_plot_on_a_missing_empty_or_malformed_folder_says_what_it_expected": "clear error before any work",
    "test_damaged_checkpoints_are_refused_naming_the_file": "clear error naming the damaged file",
    "test_resume_over_a_damaged_learner_checkpoint_is_one_clear_line": "clear error naming the damaged file",
    "test_an_empty_checksum_sidecar_is_ignored": "clear error naming the damaged file",
    "test_non_finite_environment_data_is_named": "clear error during the run, naming the cause",
    "test_an_observation_shape_that_changes_with_the_task_is_named": "clear error during the run, naming the cause",
    "test_divergence_before_the_first_checkpoint_names_no_checkpoint": "clear error during the run, naming the cause",
    "test_nan_predictions_are_diverged_in_classification": "diverged row",
    "test_resume_with_what_cannot_change_results_is_accepted": "correct result",
    "test_resume_with_fewer_learners_keeps_the_others_rows": "correct result",
    "test_overwrite_with_other_settings_leaves_no_learner_of_the_old_run": "correct result",
    "test_results_and_checkpoints_follow_the_umask": "correct result",
    "test_a_truncated_metrics_row_is_skipped": "correct result",
    "test_any_task_a_sampler_returns_is_accepted_as_json_or_refused": "correct result",
    "test_any_flag_text_is_accepted_in_range_or_refused_with_a_value_error": "correct result",
    "test_catalogue_counts_are_the_documented_ones": None,
}
HERE = Path(__file__).parent


def pytest_collection_modifyitems(session, config, items):
    """Count the collected cases by outcome into ``config.fault_counts``."""
    counts: Counter = Counter()
    files = set()
    for item in items:
        if Path(item.fspath).parent == HERE:
            files.add(Path(item.fspath).name)
            outcome = OUTCOMES[item.originalname]  # a KeyError: a new case without an outcome
            if outcome:
                counts[outcome] += 1
    config.fault_counts = counts
    config.fault_files_complete = files == {p.name for p in HERE.glob("test_*.py")}
