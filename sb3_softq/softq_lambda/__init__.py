from sb3_softq.softq.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_softq.softq_lambda.softq_lambda import SoftQLambda

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "SoftQLambda"]
