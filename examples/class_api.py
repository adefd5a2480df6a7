"""Class API with a stop criterion of 20 iterations (the Trainable page's class example).

Ported from Ray Tune by changing only the import.
"""

import atune as tune


def objective(x, a, b):
    return a * (x**0.5) + b


class Trainable(tune.Trainable):
    def setup(self, config: dict):
        # config holds the trial's hyperparameters
        self.x = 0
        self.a = config["a"]
        self.b = config["b"]

    def step(self):  # called once per training iteration
        score = objective(self.x, self.a, self.b)
        self.x += 1
        return {"score": score}


tuner = tune.Tuner(
    Trainable,
    run_config=tune.RunConfig(
        stop={"training_iteration": 20},  # train for 20 steps
        checkpoint_config=tune.CheckpointConfig(
            checkpoint_at_end=False  # no checkpointing implemented in this class
        ),
    ),
    param_space={"a": 2, "b": 4},
)
results = tuner.fit()

if __name__ == "__main__":
    print(results[0].metrics["training_iteration"], results[0].metrics["score"])
