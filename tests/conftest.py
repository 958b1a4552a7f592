import os

import pytest
import torch

os.environ.setdefault("RFTWIN_PROGRESS", "0")

import rftwin  # noqa: E402,F401  (sets DRJIT_LIBLLVM_PATH before Sionna is imported)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RFTWIN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small engine workloads run several times faster single-threaded on a shared CPU (see SIONNA_NOTES)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Tests that take more than ~3 s each on the 2-core machine (``--durations`` of the full suite): marked ``slow`` so
# that ``pytest -m "not slow"`` is a quick check (a few minutes) beside the full suite. Node-id prefixes: a file,
# a test, or a parametrised case.
SLOW = (
    "tests/calibrate/test_calibrate_cli_wideband.py::test_calibrate_with_wideband_sidecar",
    "tests/dynamic/test_dynamic.py::test_person_crossing_a_4m_link_local_equals_full_retrace",
    "tests/dynamic/test_dynamic.py::test_update_cli_end_to_end",
    "tests/dynamic/test_dynamic.py::test_geometric_update_equals_full_retrace",
    "tests/dynamic/test_dynamic.py::test_image_update_equals_full_retrace_without_sionna",
    "tests/dynamic/test_dynamic_image.py::test_image_method_finds_every_sionna_path_via_the_person",
    "tests/dynamic/test_dynamic_image.py::test_cylinder_walk_image_equals_full_retrace",
    "tests/dynamic/test_dynamic_image.py::test_paths_only_the_image_method_finds_are_real",
    "tests/physics/test_engine_mechanisms.py::test_gradients_match_finite_differences",
    "tests/physics/test_engine_mechanisms.py::test_parity_with_sionna",
    "tests/physics/test_engine_mechanisms.py::test_diffraction_shadow_region_only",
    "tests/fields/test_fields.py",
    "tests/calibrate/test_posterior.py::test_nuts_sampler_agrees_on_the_identified_parameter",
    "tests/trace/test_fanout.py::test_two_local_ray_workers_equal_serial",
    "tests/twin/test_api.py::test_field_under_the_labels_prior_has_the_heldout_proof",
    "tests/twin/test_api.py::test_hashgrid_model_trains_and_writes_maps",
    "tests/twin/test_api.py::test_text_prior_and_mcmc_posterior",
    "tests/twin/test_api.py::test_calibrator_api_equals_cli",
    "tests/twin/test_api.py::test_spec_rerun_reproduces_and_options_override",
    "tests/twin/test_api.py::test_downstream_uses_start_from_the_calibrated_twin",
    "tests/dataset/test_dataset.py::test_two_ray_workers_equal_serial",
    "tests/dataset/test_dataset.py::test_killed_export_resumes_to_the_uninterrupted_dataset",
    "tests/dataset/test_dataset.py::test_export_load_equals_predict",
    "tests/calibrate/test_noharm.py",
    "tests/physics/test_engine_parity.py::test_parity_with_sionna",
    "tests/calibrate/test_calibrate_diffuse.py",
    "tests/scene/test_export.py::test_export_reloads_with_same_objects_materials_and_gains",
    "tests/calibrate/test_mpc_cli.py::test_calibrate_from_mpc_powers_recovers_materials",
    "tests/calibrate/test_hierarchical.py::test_shrinkage_pools_the_objects_of_a_class",
    "tests/calibrate/test_resume.py::test_cli_checkpoint_every_and_resume",
    "tests/predict/test_streaming.py::test_predict_peak_memory_flat_when_links_double",
    "tests/calibrate/test_calibrate_stream.py::test_streamed_calibration_peak_memory_flat_when_links_double",
    "tests/calibrate/test_calibrate_stream.py::test_streamed_lm_equals_one_shard_run",
    "tests/calibrate/test_calibrate_stream.py::test_file_shards_round_trip_regroup_and_errors",
    "tests/validate/test_validate_closed_forms.py::test_knife_edge_near_shadow_boundary",
    "tests/calibrate/test_multiband.py",
    "tests/pathset/test_pathset_cli.py::test_cli_doctor_predict_calibrate",
    "tests/calibrate/test_posterior.py",
    "tests/twin/test_api.py::test_untrained_field_twin_predicts_like_the_labels",
    "tests/cli/test_trust.py::test_meshes_resolve_against_the_scene_folder_not_the_working_folder",
    "tests/demo/test_demo.py::test_demo_json_plot_and_bounded_estimates",
    "tests/physics/test_engine_mechanisms.py::test_calibrate_scattering_coefficients",
    "tests/materials/test_groups.py::test_cli_calibrate_with_label_groups_and_bad_groups_file",
    "tests/materials/test_groups.py::test_label_groups_tie_parameters_and_recover_class_values",
    "tests/scene/test_import.py::test_point_cloud_room_reconstructs_and_traces",
    "tests/predict/test_streaming.py::test_streamed_prediction_equals_whole_pathset_prediction",
    "tests/priors/test_vlm.py::test_calibrate_with_the_vlm_prior",
    "tests/calibrate/test_label_groups.py",
    "tests/calibrate/test_shrinkage_auto.py",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
