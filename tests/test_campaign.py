"""Campaign files: validation (one line per problem), defaults, round trips, the shipped files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evodisc.campaign.config import (
    Campaign,
    CampaignError,
    check_tasks,
    defaults_table,
    load_campaign,
)
from fitness.config import DEFAULT_LRS, SuiteConfig
from search_spaces.evolution import EvolutionConfig
from search_spaces.mutations import MUTATIONS
from search_spaces.space import DEFAULT_SPACE

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
QUICKSTART = EXPERIMENTS / "quickstart.toml"
MINIMAL = "[budget]\nevaluations = 10\n"


def write(tmp_path: Path, text: str, name: str = "trial.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_file_gets_every_default(tmp_path):
    campaign = load_campaign(write(tmp_path, MINIMAL))
    assert campaign.name == "trial"
    assert campaign.budget.evaluations == 10 and campaign.budget.wall_seconds is None
    assert campaign.space.state == DEFAULT_SPACE.state
    assert campaign.space.ops == DEFAULT_SPACE.ops
    assert campaign.fitness == SuiteConfig()  # the fitness defaults, the search suite's tasks
    assert campaign.fitness.lrs == DEFAULT_LRS
    assert campaign.evolution.mutation_weights == {name: 1.0 for name in MUTATIONS}
    config = campaign.evolution_config()
    defaults = EvolutionConfig()
    assert (config.population, config.tournament, config.warm_start, config.seed) == (
        defaults.population,
        defaults.tournament,
        defaults.warm_start,
        defaults.seed,
    )


def test_sections_map_onto_the_evolution_config(tmp_path):
    text = MINIMAL + (
        "[campaign]\nname = 'x'\nseed = 7\n"
        "[space]\nstate = ['m']\nops = ['sign', 'interp']\nmax_state_slots = 2\n"
        "min_statements = 1\nmax_statements = 4\nconstants = [0.9, 1]\n"
        "[evolution]\npopulation = 10\ntournament = 3\nwarm_start = []\nrandom_programs = 10\n"
        "[evolution.mutation_weights]\nperturb_constant = 0\ninsert_statement = 2.5\n"
    )
    config = load_campaign(write(tmp_path, text)).evolution_config()
    assert (config.population, config.tournament, config.seed) == (10, 3, 7)
    assert (config.warm_start, config.random_programs, config.space.max_state_slots) == ((), 10, 2)
    assert config.mutation_weights["perturb_constant"] == 0.0
    assert config.mutation_weights["insert_statement"] == 2.5
    assert config.mutation_weights["delete_statement"] == 1.0  # unlisted: the default
    space = config.space
    assert (space.state, space.ops, space.min_statements, space.max_statements) == (
        ("m",),
        ("sign", "interp"),
        1,
        4,
    )
    assert space.constants == (0.9, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[evolution]\npopulaton = 10\n", "[evolution] unknown key 'populaton' (did you mean "
         "'population'?)"),
        ("[evolution]\npopulation = 'ten'\n",
         "evolution.population: expected an integer from 1 to 100000, got 'ten'"),
        ("[evolution]\npopulation = 0\n", "evolution.population: expected an integer from 1 to"),
        ("[evolution]\npopulation = true\n", "evolution.population: expected an integer from"),
        ("[evolutoin]\npopulation = 10\n", "unknown section [evolutoin] (did you mean "
         "[evolution]?)"),
        ("population = 10\n", "key 'population' outside a section (it belongs in [evolution])"),
        ("[evolution]\npopulation = 4\ntournament = 8\n",
         "evolution.tournament: expected at most population (4), got 8"),
        ("[evolution]\nwarm_start = ['adamww']\n",
         "evolution.warm_start: unknown optimizer 'adamww' (did you mean 'adamw'?)"),
        ("[evolution]\nwarm_start = []\n", "evolution.random_programs: expected > 0 when"),
        ("[evolution.mutation_weights]\ninsrt_statement = 1\n",
         "evolution.mutation_weights: unknown mutation 'insrt_statement' (did you mean "
         "'insert_statement'?)"),
        ("[evolution.mutation_weights]\ninsert_statement = -1\n",
         "evolution.mutation_weights: expected a table of numbers >= 0"),
        ("[evolution]\nmutation_weights = 3\n", "expected a table of numbers >= 0, got 3"),
        ("[space]\nops = ['sqrt', 'sine']\n", "space.ops: unknown primitive 'sine'"),
        ("[space]\nmin_statements = 9\nmax_statements = 3\n",
         "space.max_statements: expected at least min_statements (9), got 3"),
        ("[space]\nstate = ['a', 'b', 'c', 'd']\n", "space.state: expected at most "
         "max_state_slots (3) names"),
        ("[space]\nstate = ['g']\n", "space.state: expected distinct names, none an input "
         "(w, g, lr, t, T), 'update', a keyword or a primitive, got ('g',)"),
        ("[space]\nstate = ['m', 'T']\n", "space.state: expected distinct names, none an input "
         "(w, g, lr, t, T)"),
        ("[space]\nstate = ['m', 'm']\n", "space.state: expected distinct names"),
        ("[space]\nstate = ['sqrt']\n", "space.state: expected distinct names"),
        ("[space]\nconstants = []\n", "space.constants: expected a non-empty list of numbers"),
        ("[fitness]\nlrs = [0.1, -1]\n",
         "fitness.lrs: expected a non-empty list of at most 64 distinct numbers > 0"),
        ("[fitness]\ndtype = 'float16'\n", "fitness.dtype: expected one of 'float32', 'float64'"),
        ("[fitness]\nseeds = [0.5]\n",
         "fitness.seeds: expected a non-empty list of at most 64 distinct integers"),
        ("[fitness]\nbaseline_seeds = []\n",
         "fitness.baseline_seeds: expected a non-empty list of at most 64 distinct"),
        ("[fitness]\ncheckpoints = 0\n", "fitness.checkpoints: expected a positive integer"),
        ("[resources]\ngpus_per_evaluator = -0.5\n", "resources.gpus_per_evaluator: expected a "
         "number >= 0, got -0.5"),
        ("[resources]\nevaluator = 2\n", "(did you mean 'evaluators'?)"),
        ("[campaign]\nseed = 1.5\n", "campaign.seed: expected an integer, got 1.5"),
        ("[fitness]\nseeds = [0, 0, 0]\n", "fitness.seeds: expected a non-empty list of at most 64 "
         "distinct integers, got [0, 0, 0]"),
        ("[fitness]\ntasks = ['ill_conditioned', 'ill_conditioned']\n",
         "fitness.tasks: expected a non-empty list of at most 64 distinct task names"),
        ("[evolution]\nislands = 1000000\n",
         "evolution.islands: expected an integer from 1 to 1024"),
        ("[space]\nmax_statements = 100000000\n",
         "space.max_statements: expected an integer from 1 to 1000"),
        ("[fitness]\nseeds = " + str(list(range(65))) + "\n", "expected a non-empty list of at "
         "most 64 distinct integers"),
    ],
)  # fmt: skip
def test_a_problem_is_one_line_naming_file_and_key(tmp_path, text, message):
    budget = "" if text.startswith("population") else MINIMAL
    path = write(tmp_path, budget + text)
    with pytest.raises(CampaignError) as error:
        load_campaign(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_budget_is_required(tmp_path):
    with pytest.raises(CampaignError, match=r"\[budget\]: expected evaluations and/or wall_sec"):
        load_campaign(write(tmp_path, "[budget]\n"))


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(CampaignError, match=r"missing\.toml: no such campaign file$"):
        load_campaign(tmp_path / "missing.toml")
    path = write(tmp_path, MINIMAL + "[evolution]\npopulation = = 3\n")
    with pytest.raises(CampaignError, match=r"trial\.toml: invalid TOML: .*line 4") as error:
        load_campaign(path)
    assert "\n" not in str(error.value)


def test_to_dict_round_trips_and_digest_is_stable(tmp_path):
    campaign = load_campaign(QUICKSTART)
    document = json.loads(json.dumps(campaign.to_dict()))
    assert Campaign.from_dict(document) == campaign
    assert Campaign.from_dict(document).digest() == campaign.digest()
    sections = {"campaign", "space", "evolution", "budget", "fitness", "resources"}
    assert set(document) == sections | {"screen", "selection"}
    document["evolution"]["population"] += 1
    assert Campaign.from_dict(document).digest() != campaign.digest()
    document["evolution"]["populaton"] = 3
    with pytest.raises(CampaignError, match=r"^campaign\.json: \[evolution\] unknown key"):
        Campaign.from_dict(document)


def test_check_tasks_resolves_and_refuses_unknown_names(tmp_path):
    from fitness.tasks import task_names

    campaign = check_tasks(load_campaign(write(tmp_path, MINIMAL)))
    assert campaign.fitness.tasks == tuple(task_names())
    assert campaign.suite_config().tasks == tuple(task_names())  # the controller's use
    path = write(tmp_path, MINIMAL + "[fitness]\ntasks = ['teacher_studnet']\n")
    with pytest.raises(CampaignError, match="unknown task 'teacher_studnet' .*'teacher_student'"):
        check_tasks(load_campaign(path), str(path))
    path = write(tmp_path, MINIMAL + "[fitness]\ntasks = ['nofile.py:make']\n")
    with pytest.raises(CampaignError, match="fitness.tasks: nofile.py:make: no such file"):
        check_tasks(load_campaign(path))


def test_fitness_settings_make_the_suite_config(tmp_path):
    text = MINIMAL + "[fitness]\nseeds = [4]\nbaseline_seeds = [1, 2]\ncheckpoints = 3\n"
    config = check_tasks(load_campaign(write(tmp_path, text))).suite_config()
    assert (config.seeds, config.baseline_seeds, config.checkpoints) == ((4,), (1, 2), 3)
    default = check_tasks(load_campaign(write(tmp_path, MINIMAL))).suite_config()
    assert default == SuiteConfig()  # a file's defaults are the fitness defaults


def test_quickstart_is_valid_and_cheap():
    campaign = check_tasks(load_campaign(QUICKSTART))
    assert campaign.name == "quickstart"
    assert set(campaign.fitness.tasks) == {"teacher_student", "ill_conditioned"}
    assert campaign.resources.evaluators * campaign.resources.cpus_per_evaluator <= 2


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_campaign_file_is_valid(path):
    campaign = check_tasks(load_campaign(path))
    assert campaign.budget.evaluations or campaign.budget.wall_seconds
    assert path.name in (EXPERIMENTS / "README.md").read_text()  # each is described there


def test_readme_table_is_the_code_table():
    assert defaults_table() in (EXPERIMENTS / "README.md").read_text()


def test_loading_a_campaign_imports_neither_torch_nor_ray():
    code = (
        "import sys\nfrom evodisc.campaign.config import load_campaign\n"
        "import evodisc.campaign.store\n"
        f"load_campaign({str(QUICKSTART)!r}).evolution_config()\n"
        "print(sorted({'torch', 'ray'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
