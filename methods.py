"""The registry of methods and their stages: train.py and test.py find the stage of --stage here.

A method is one module (cpvton.py, viton.py) whose STAGES are stages.Stage entries; registering a method
is adding its module to METHOD_MODULES, and its own flags (add_arguments) join train.py's and test.py's.
"""
import cpvton
import mgvton
import viton
import wuton

METHOD_MODULES = (cpvton, viton, wuton, mgvton)
STAGES = {stage.name: stage for module in METHOD_MODULES for stage in module.STAGES}


def add_method_arguments(parser, training):
    """The flags of each method that has its own (``training``: train.py's, else test.py's)."""
    for module in METHOD_MODULES:
        if hasattr(module, 'add_arguments'):
            module.add_arguments(parser, training)


def refuse_other_stages_options(parser, opt, training):
    """A flag of another stage than --stage is a mistake in the command, not an option to drop silently; then the
    stage's own rules between its flags (``training``: train.py's, else test.py's)."""
    owners = {}
    for stage in STAGES.values():
        for name in stage.options:
            owners.setdefault(name, []).append(stage.name)
    for name, stages in owners.items():
        if opt.stage not in stages and hasattr(opt, name) and getattr(opt, name) != parser.get_default(name):
            parser.error(f'--{name} is an option of --stage {" or ".join(stages)}; it does nothing with --stage '
                         f'{opt.stage}')
    STAGES[opt.stage].check_options(parser, opt, training)
