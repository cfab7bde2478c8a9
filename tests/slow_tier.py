"""Which tests the quick tier leaves out.

The quick tier is ``python -m pytest -q -m "not slow" tests`` (under 5 minutes on 2 cores); the
README's full command runs everything. ``@pytest.mark.slow`` on a test marks it too.
"""

from pathlib import Path

# Slow: each of these functions, and every test of a module that uses one of its listed
# fixtures (a trained run, a subprocess with several devices, a live server). Chosen from
# `pytest --durations` of the whole suite; tests/test_slow_tier.py checks every name exists.
SLOW_TESTS = {
    "tests/docs/test_guides.py": {
        "test_environment_guide",
    },
    "tests/envs/test_contract.py": {
        "test_generator_batch_is_valid_and_key_dependent",
        "test_observation_and_info_contract",
        "test_rollout_under_jit",
    },
    "tests/envs/test_control.py": {
        "test_menu_and_repeat_compose_control_editors",
    },
    "tests/envs/test_control_experiments.py": {
        "test_experiment_runs_a_few_steps",
    },
    "tests/envs/test_maze_levels.py": {
        "test_perfect_maze_is_a_spanning_tree",
    },
    "tests/envs/test_maze_programs.py": {
        "test_perfect_mazes_are_spanning_trees_of_their_size",
    },
    "tests/envs/test_maze_set_cell.py": {
        "test_dcd_editor_grows_walls_from_empty_rooms_and_the_menu_does_not",
    },
    "tests/envs/test_program_contract.py": {
        "test_program_space_is_declared_consistently",
    },
    "tests/scripts/test_benchmark.py": {
        "test_end_to_end_tiny_run_writes_jsonl",
        "test_gpu_script_runs_at_a_tiny_size_on_the_cpu",
        "test_student_flops_match_the_layer_sizes",
    },
    "tests/scripts/test_cli.py": {
        "test_evaluate_cli_known_outcomes",
        "test_sigint_checkpoints_and_resume_completes",
    },
    "tests/scripts/test_compile_cache.py": {
        "test_shipped_experiments_train_twice_against_one_compile_cache",
    },
    "tests/scripts/test_hostile.py": {
        "test_damaged_checkpoint_is_one_warning_not_tracebacks",
        "test_second_process_is_refused_and_the_first_keeps_its_run",
        "test_sigint_before_training_exits_130_writing_nothing",
    },
    "tests/scripts/test_suite.py": {
        "test_a_student_updates_budget_trains_until_every_seed_took_that_many",
        "test_interrupted_cell_stops_the_suite_and_keeps_its_checkpoint",
    },
    "tests/ued/test_buffer.py": {
        "test_invariants_size_and_weights",
        "test_jit_and_no_jit_agree",
    },
    "tests/ued/test_carry_episodes.py": {
        "test_carried_episodes_resume_exactly",
        "test_episodes_run_across_rollouts_when_carried",
        "test_the_loss_resets_the_carry_only_where_an_episode_starts",
    },
    "tests/ued/test_checkpoint.py": {
        "test_nonfinite_run_stops_and_keeps_last_good_checkpoint",
        "test_resumed_run_equals_uninterrupted_run_bitwise",
    },
    "tests/ued/test_curricula.py": {
        "test_accel_step_after_replay_edits_the_replayed_levels",
        "test_plan_groups_label_each_env",
        "test_plr_trains_on_new_levels",
        "test_runs_with_finite_metrics",
    },
    "tests/ued/test_curriculum_guide.py": {
        "test_levels_follow_the_target",
    },
    "tests/ued/test_default_run.py": {
        "test_eval_at_start_logs_update_zero_and_reports",
    },
    "tests/ued/test_eval_horizon.py": {
        "test_a_named_set_brings_its_own_size_and_the_papers_horizon",
    },
    "tests/ued/test_evaluate.py": {
        "test_random_levels_keep_only_accepted_ones",
    },
    "tests/ued/test_golden.py": {
        "test_golden",
        "test_golden_per_rollout_levels",
    },
    "tests/ued/test_inbox.py": {
        "test_sent_levels_are_applied_exactly_once_across_sigint_crash_and_resume",
    },
    "tests/ued/test_kernels.py": {
        "test_lstm_forward_and_gradients_match_autodiff",
        "test_patch_conv_options_equal_flax_conv",
    },
    "tests/ued/test_learning.py": {
        "test_return_rises_on_tiny_mazes",
    },
    "tests/ued/test_networks.py": {
        "test_actor_critic_wide_input_has_the_same_parameters_and_results",
    },
    "tests/ued/test_paired.py": {
        "test_builder_encoder_equals_flax_conv",
        "test_paired_runs_from_its_experiment_file",
    },
    "tests/ued/test_parallel.py": {
        "test_four_devices_are_visible",
        "test_seeded_init_on_one_device_finishes",
        "test_single_device_runner_is_the_plain_step",
    },
    "tests/ued/test_presets.py": {
        "test_preset_trains_checkpoints_and_resumes",
    },
    "tests/ued/test_program_spec.py": {
        "test_with_almost_no_trend_in_the_box_optimism_sometimes_explores_first",
    },
    "tests/ued/test_program_runs.py": {
        "test_real_runs_fill_the_archive_with_finite_metrics",
        "test_toy_run_logs_widenings_and_draws_the_archive",
        "test_toy_run_with_the_model_in_the_loop_logs_bounds_and_calibration",
        "test_vmapped_seeds_probe_only_on_probe_updates_and_count_what_ran",
    },
    "tests/ued/test_programs.py": {
        "test_archive_finds_the_best_region_after_widening_to_it",
        "test_next_levels_differ_by_key_where_the_program_leaves_freedom",
    },
    "tests/ued/test_progress_deadline.py": {
        "test_a_working_process_is_waited_for_past_the_stall",
    },
    "tests/ued/test_run_folder.py": {
        "test_fresh_run_into_a_finished_run_is_refused",
    },
    "tests/ued/test_seeds.py": {
        "test_a_seed_is_the_single_seed_run_with_that_seed",
        "test_each_chunk_logs_one_row_per_seed",
        "test_sequential_seeds_equal_single_seed_runs_bit_for_bit",
    },
    "tests/ued/test_sfl.py": {
        "test_sfl_runs_from_its_experiment_file",
        "test_vmapped_seeds_refresh_every_l_updates_and_count_what_ran",
    },
    "tests/ued/test_studio_api.py": {
        "test_runs_are_listed_with_status_and_progress",
    },
    "tests/ued/test_studio_archive.py": {
        "test_levels_show_the_program_archive_fittest_first",
    },
    "tests/ued/test_studio_browser.py": {
        "test_draw_try_and_send_a_level_into_training",
        "test_runs_and_watch_pages_show_the_live_run",
    },
    "tests/ued/test_train_toy.py": {
        "test_step_is_deterministic_and_keys_advance",
        "test_training_improves_return_on_tiny_task",
    },
}
SLOW_FIXTURES = {
    "tests/envs/test_maze_programs.py": {"built"},
    "tests/scripts/test_cli.py": {"run"},
    "tests/scripts/test_suite.py": {"suite_run"},
    "tests/ued/test_buffer.py": {"episodes"},
    "tests/ued/test_checkpoint.py": {"runs"},
    "tests/ued/test_curricula.py": {"run8"},
    "tests/ued/test_paired.py": {"paired_run"},
    "tests/ued/test_parallel.py": {"checks"},
    "tests/ued/test_program_spec.py": {"model_run"},
    "tests/ued/test_program_runs.py": {"real_run"},
    "tests/ued/test_run_folder.py": {"done"},
    "tests/ued/test_seeds.py": {"schedule_runs", "seeded_run"},
    "tests/ued/test_sfl.py": {"sfl_run"},
    "tests/ued/test_studio_api.py": {"client"},
    "tests/ued/test_studio_archive.py": {"program_run"},
    "tests/ued/test_studio_browser.py": {"live"},
    "tests/ued/test_uniform_replay.py": {"trained"},
}

ROOT = Path(__file__).resolve().parent.parent


def is_slow(item) -> bool:
    """True for a collected test (a pytest item) that the quick tier leaves out."""
    path = Path(str(item.fspath)).resolve()
    try:
        where = path.relative_to(ROOT).as_posix()
    except ValueError:
        return False
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    return name in SLOW_TESTS.get(where, ()) or bool(fixtures & SLOW_FIXTURES.get(where, set()))
