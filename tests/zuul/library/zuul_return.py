#!/usr/bin/python3
# A stand-in for Zuul's zuul_return, which exists only inside Zuul's
# executor. It takes the same `data` argument and records each call's data,
# one JSON document per line, in the file named by KILN_TEST_ZUUL_RETURN,
# so the test reads what the role would have returned to Zuul.
import json
import os

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(data=dict(type="dict", required=True)))
    with open(os.environ["KILN_TEST_ZUUL_RETURN"], "a", encoding="utf-8") as out:
        out.write(json.dumps(module.params["data"], sort_keys=True) + "\n")
    module.exit_json(changed=False)


if __name__ == "__main__":
    main()
