/* commands.h - sub-command entry points of the `ote` CLI. Each takes argv starting at the
 * command name and returns the process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef OTE_COMMANDS_H
#define OTE_COMMANDS_H

int cmd_version(int argc, char **argv);
int cmd_make_demo_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_dump_batches(int argc, char **argv);
int cmd_pth_dump(int argc, char **argv);
int cmd_hpo(int argc, char **argv);
int cmd_import_backbone(int argc, char **argv);

#endif
